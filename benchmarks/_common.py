"""What the benchmark scripts share: repository paths and politeness on a shared machine."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def kodak_dir() -> str:
    """The Kodak folder: ``$VAECODEC_KODAK`` if set, else the shared data folder."""
    return os.environ.get("VAECODEC_KODAK", str(KODAK))


def learned_codec_on_images(description: str, model_help: str, argv=None):
    """Shared set-up of the scripts that run one learned codec over a folder of images:
    parse ``--model --data --max-images --threads``, set the threads, lower the priority,
    read the images and print what is measured.

    Returns:
        ``(name, codec, images)``: the codec's name (``--model`` or the zoo default), its
        :class:`vaecodec.evaluate.rd.LearnedCodecAdaptor`, the RGB uint8 arrays.
    """
    import argparse

    import torch

    from vaecodec.data import list_images, read_image
    from vaecodec.evaluate.rd import LearnedCodecAdaptor
    from vaecodec.zoo.codecs import codec_summary

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", help=model_help)
    p.add_argument("--data", default=kodak_dir(), help="folder of test images (default Kodak)")
    p.add_argument("--max-images", type=int)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lower_priority()
    name = args.model or codec_summary()["default_codec"]
    codec = LearnedCodecAdaptor(name)  # its qualities: the family's, or a run's levels
    files = list_images(args.data)[: args.max_images]
    print(f"{name} on {len(files)} images of {args.data}")
    return name, codec, [read_image(f)[0] for f in files]


def lower_priority(level: int = 10) -> None:
    """Renice this process to ``level`` (a shared machine: stay out of the way)."""
    with contextlib.suppress(OSError):
        if os.nice(0) < level:
            os.nice(level - os.nice(0))

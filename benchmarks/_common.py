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


def lower_priority(level: int = 10) -> None:
    """Renice this process to ``level`` (a shared machine: stay out of the way)."""
    with contextlib.suppress(OSError):
        if os.nice(0) < level:
            os.nice(level - os.nice(0))

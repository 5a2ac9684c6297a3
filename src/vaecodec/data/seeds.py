"""Seeds derived from several integers, the same on every machine (data order, crops, noise)."""

from __future__ import annotations

import numpy as np


def mix_seed(*values: int) -> int:
    """Mix integers into one 63-bit seed (``numpy.random.SeedSequence``; machine-independent)."""
    ss = np.random.SeedSequence([int(v) % 2**64 for v in values])
    return int(ss.generate_state(1, np.uint64)[0]) & (2**63 - 1)

"""Entropy coding: from integer symbols and probability tables to bytes and back.

- :mod:`.detmath`: machine-independent float64 math for the probability tables.
- :mod:`.entropy`: integer pmf tables and the constriction range coder (with escapes).
- :mod:`.container`: the lossy ``.vcz`` file format (``docs/format.md``).
- :mod:`.bitsback`, :mod:`.bitsback_container`: lossless bits-back coding (``VCZL`` streams).
"""

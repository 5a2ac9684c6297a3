"""Primitives of coding: from integer symbols and probability tables to bytes, and the byte
formats. Nothing here knows a model, an image file or the zoo (the layer above,
:mod:`vaecodec.priors`, owns the probability models; :mod:`vaecodec.compression` uses both).

- :mod:`.detmath`: machine-independent float64 math for the probability tables.
- :mod:`.entropy`: integer pmf tables and the constriction range coder (with escapes).
- :mod:`.container`: the lossy ``.vcz`` file format (``docs/format.md``), the quality <-> rate
  level rule, the weights fingerprint of a ``.vcz`` header.
- :mod:`.lossless_format`: the lossless ``VCZL`` stream format (``docs/lossless-format.md``):
  header, portable file names, ANS lanes and their seed words.
"""

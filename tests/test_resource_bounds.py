"""Issue 18, point 6, lossless side: the work a VCZL header may claim is bounded by its payload.

A lossless stream's header says how many images it holds (N, up to 2**24) and the decoder
decodes that many, whatever the payload: a crafted ~220-byte stream claiming 200 000 anonymous
28x28 images (the image table zlib-compresses to a few hundred bytes, one lane, no words) keeps
``decompress`` busy for minutes before its pixel CRC fails. The rule (to be wired into the
stream parser, :func:`vaecodec.coding.lossless_format.payload_problem`):

    every lane must store at least 1/16 bit of payload per pixel it decodes:
        32 * n_words(lane) * 16 >= n_images(lane) * C * H * W

Honest streams carry far more (measured: 26-55 bits per 8x8 image of the tests' tiny models on
blank images, 360 bits per blank 28x28 image of ``mnist-vae`` = 0.46 bit/pixel, 2170 for
``mnist-vae-8bit``; real digits cost more), so the rule leaves them a margin of 6x or more,
and it bounds the decoder's work (linear in pixels) to 16 pixels per payload bit: a 217-byte
stream can claim at most ~35 images of 28x28.
"""

from __future__ import annotations

import signal
import struct
import time
import zlib

import numpy as np
import pytest

from vaecodec.errors import FormatError

BITS_PER_PIXEL_FLOOR = 1 / 16


def _header_end(data: bytes) -> int:
    """Offset just after the weights hash (docs/lossless-format.md)."""
    (m,) = struct.unpack(">H", data[8:10])
    return 10 + m + 32


def lane_budget_problem(data: bytes) -> str | None:
    """The rule, on a stream's bytes: None if every lane carries at least
    BITS_PER_PIXEL_FLOOR bit per pixel it decodes, else what is wrong."""
    p = _header_end(data)
    c, h, w, _levels, n = struct.unpack(">BHHHI", data[p : p + 11])
    (tlen,) = struct.unpack(">I", data[p + 11 : p + 15])
    q = p + 15 + tlen
    _crc, s = struct.unpack(">IH", data[q : q + 6])
    for lane in range(s):
        _prefix, nw = struct.unpack(">II", data[q + 6 + 8 * lane : q + 14 + 8 * lane])
        pixels = len(range(lane, n, s)) * c * h * w
        if 32 * nw < pixels * BITS_PER_PIXEL_FLOOR:
            return (f"lane {lane} holds {32 * nw} bits of payload for {pixels} pixels "
                    f"(at least {pixels * BITS_PER_PIXEL_FLOOR:.0f} needed)")  # fmt: skip
    return None


def _crafted(n: int = 200_000) -> bytes:
    """A stream with a valid CRC claiming ``n`` blank 28x28 binary images with no payload."""
    from vaecodec.api import compress_lossless

    valid = compress_lossless(np.zeros((2, 28, 28), np.uint8), "mnist-vae")
    p = _header_end(valid)
    head = bytearray(valid[:p])
    head[5] = 0  # flags: anonymous images
    table = zlib.compress(bytes([1]) * n, 9)  # every image: a binary "1" is 255
    body = bytes(head) + struct.pack(">BHHHI", 1, 28, 28, 2, n)
    body += struct.pack(">I", len(table)) + table
    body += struct.pack(">IH", 0, 1) + struct.pack(">II", 16, 0)  # one lane: whole seed, 0 words
    return body + struct.pack(">I", zlib.crc32(body))


def test_honest_streams_keep_the_rule():
    from vaecodec.api import compress_lossless

    rng = np.random.default_rng(0)
    for images in (np.zeros((64, 28, 28), np.uint8),  # the cheapest images there are
                   (rng.random((64, 28, 28)) < 0.2).astype(np.uint8) * 255):  # fmt: skip
        assert lane_budget_problem(compress_lossless(images, "mnist-vae")) is None


def test_the_crafted_stream_breaks_the_rule():
    data = _crafted()
    assert len(data) < 400
    assert "lane 0 holds 0 bits" in lane_budget_problem(data)


class _TookTooLong(Exception):
    pass


def test_a_header_cannot_claim_more_work_than_its_payload_pays_for():
    """The 200 000 claimed images were decoded (minutes) before the pixel CRC failed; the
    parser refuses the stream from its header, before decoding anything."""
    from vaecodec.api import decompress_lossless

    data = _crafted()

    def _alarm(*_):
        raise _TookTooLong("still decoding after 5 s: the header's image count was trusted")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    t = time.perf_counter()
    try:
        with pytest.raises(FormatError, match="payload"):
            decompress_lossless(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - t < 5.0

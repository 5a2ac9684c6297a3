"""Stream layouts and mutators for the fuzz harness (issue 18 point 4).

Shared by ``tests/test_fuzz.py`` (Hypothesis, about a minute) and
``benchmarks/fuzz_streams.py`` (the long run). The two layouts are written here from their
specifications (``docs/format.md``, ``docs/lossless-format.md``), not imported from
``vaecodec.coding``: the harness checks the decoder against the documents, not against
itself.

Every mutator takes a ``draw`` object with ``draw.int(lo, hi)`` (inclusive bounds),
``draw.bytes(n)`` and ``draw.choice(seq)``: Hypothesis drives it in the tests
(:class:`HypothesisDraw`), a seeded numpy generator in the long run (:class:`RngDraw`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VCZ_MAGIC = b"VCZ1"
VCZL_MAGIC = b"VCZL"


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32 (zlib polynomial, big-endian): both formats end so."""
    return body + struct.pack(">I", zlib.crc32(body))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ---------------------------------------------------------------------------------------------
# The lossy .vcz layout (docs/format.md, "Layout")
# ---------------------------------------------------------------------------------------------


@dataclass
class Vcz:
    version: int
    model_type: int
    mode: int  # low nibble of byte 6
    n_streams: int  # high nibble of byte 6
    name: bytes
    weights_hash: bytes
    quality: int
    height: int
    width: int
    streams: list[bytes]
    lengths: bytes | None = None  # raw varint bytes; None: the true lengths of streams[:-1]
    check: bytes = b""  # the symbols check after the width (version 2; empty in version 1)

    def pack(self, crc: bool = True) -> bytes:
        lengths = self.lengths
        if lengths is None:
            lengths = b"".join(varint(len(s)) for s in self.streams[:-1])
        body = (VCZ_MAGIC + bytes([self.version & 255, self.model_type & 255,
                                   (self.mode & 15) | (self.n_streams & 15) << 4,
                                   len(self.name) & 255])
                + self.name + self.weights_hash
                + struct.pack(">BHH", self.quality & 255, self.height & 0xFFFF,
                              self.width & 0xFFFF)
                + self.check + lengths + b"".join(self.streams))  # fmt: skip
        return with_crc(body) if crc else body


def parse_vcz(data: bytes) -> Vcz:
    """Fields of a *valid* ``.vcz`` file (the harness's own seeds; no checks)."""
    n = data[7]
    name = data[8 : 8 + n]
    p = 8 + n
    whash = data[p : p + 8]
    quality, height, width = struct.unpack(">BHH", data[p + 8 : p + 13])
    p += 13
    check = data[p : p + 4] if data[4] >= 2 else b""
    p += len(check)
    s = data[6] >> 4
    lengths = []
    for _ in range(s - 1):
        v = shift = 0
        while True:
            b = data[p]
            p += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        lengths.append(v)
    body = data[p:-4]
    streams, q = [], 0
    for n_ in lengths:
        streams.append(body[q : q + n_])
        q += n_
    streams.append(body[q:])
    return Vcz(data[4], data[5], data[6] & 15, s, name, whash, quality, height, width, streams,
               check=check)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The lossless VCZL layout (docs/lossless-format.md, "Layout")
# ---------------------------------------------------------------------------------------------


@dataclass
class Vczl:
    version: int
    flags: int
    prec: int
    grid: int
    model: bytes
    weights_hash: bytes
    c: int
    h: int
    w: int
    levels: int
    n: int
    table: bytes  # zlib-compressed image table
    pixel_crc: int
    lanes: list[tuple[int, int]]  # (seed prefix length, number of stored words)
    words: bytes
    extra: bytes = b""  # bytes between the words and the CRC (none in a valid stream)
    names: list[bytes] | None = field(default=None, compare=False)  # decoded table, if known
    scales: bytes = field(default=b"", compare=False)

    def pack(self, crc: bool = True) -> bytes:
        out = [VCZL_MAGIC, bytes([self.version & 255, self.flags & 255, self.prec & 255,
                                  self.grid & 255]),
               struct.pack(">H", len(self.model) & 0xFFFF), self.model, self.weights_hash,
               struct.pack(">BHHHI", self.c & 255, self.h & 0xFFFF, self.w & 0xFFFF,
                           self.levels & 0xFFFF, self.n & 0xFFFFFFFF),
               struct.pack(">I", len(self.table)), self.table,
               struct.pack(">IH", self.pixel_crc & 0xFFFFFFFF, len(self.lanes) & 0xFFFF)]  # fmt: skip
        out += [struct.pack(">II", a & 0xFFFFFFFF, b & 0xFFFFFFFF) for a, b in self.lanes]
        body = b"".join(out) + self.words + self.extra
        return with_crc(body) if crc else body


def image_table(names: list[bytes] | None, scales: bytes, level: int = 9) -> bytes:
    raw = b"" if names is None else b"".join(n + b"\0" for n in names)
    return zlib.compress(raw + scales, level)


def parse_vczl(data: bytes) -> Vczl:
    """Fields of a *valid* ``VCZL`` stream (the harness's own seeds; no checks)."""
    version, flags, prec, grid = data[4:8]
    (m,) = struct.unpack(">H", data[8:10])
    p = 10 + m
    model, whash = data[10:p], data[p : p + 32]
    p += 32
    c, h, w, levels, n = struct.unpack(">BHHHI", data[p : p + 11])
    p += 11
    (t,) = struct.unpack(">I", data[p : p + 4])
    table = data[p + 4 : p + 4 + t]
    p += 4 + t
    pixel_crc, s = struct.unpack(">IH", data[p : p + 6])
    p += 6
    lanes = [struct.unpack(">II", data[p + 8 * i : p + 8 * i + 8]) for i in range(s)]
    p += 8 * s
    raw = zlib.decompress(table)
    names = raw[:-n].split(b"\0")[:-1] if flags & 1 else None
    return Vczl(version, flags, prec, grid, model, whash, c, h, w, levels, n, table, pixel_crc,
                lanes, data[p:-4], names=names, scales=raw[-n:])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------------------------


class RngDraw:
    """Draws from a seeded ``numpy.random.Generator`` (the long run)."""

    def __init__(self, rng) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def bytes(self, n: int) -> bytes:
        return self.rng.bytes(n)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]


class HypothesisDraw:
    """Draws from Hypothesis's ``st.data()`` (the tests; shrinks to small reproducers)."""

    def __init__(self, data) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def bytes(self, n: int) -> bytes:
        return self.data.draw(self.st.binary(min_size=n, max_size=n))

    def choice(self, seq):
        return self.data.draw(self.st.sampled_from(list(seq)))


def _flip_a_bit(draw, data: bytes) -> bytes:
    """``data`` with one bit flipped, chosen by ``draw``."""
    h = bytearray(data)
    h[draw.int(0, len(h) - 1)] ^= 1 << draw.int(0, 7)
    return bytes(h)


def _interesting(draw, value: int, bits: int) -> int:
    """Another value for an unsigned field of ``bits`` bits: near the old one, an edge, or
    anything."""
    top = (1 << bits) - 1
    k = draw.int(0, 5)
    if k == 0:
        return max(0, min(top, value + draw.choice((-1, 1, -2, 2, 16, -16, 64))))
    if k == 1:
        return draw.choice((0, 1, 2, top, top - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1))
    if k == 2:
        return draw.choice((0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 255, 256, 1023, 1024, 4096,
                            1 << 15, 1 << 16, 1 << 24, 1 << 28)) & top  # fmt: skip
    if k == 3:
        return max(0, min(top, value * draw.choice((2, 4, 16, 256)) + draw.int(0, 3)))
    return draw.int(0, top)


# ---------------------------------------------------------------------------------------------
# Byte-level mutations (any format)
# ---------------------------------------------------------------------------------------------


def mutate_bytes(draw, data: bytes, other: bytes) -> tuple[str, bytes]:
    """One byte-level mutation of ``data`` (``other``: a second stream for splices)."""
    b = bytearray(data)
    k = draw.int(0, 8)
    if k == 0 and b:
        i = draw.int(0, len(b) - 1)
        b[i] ^= 1 << draw.int(0, 7)
        return "bit flip", bytes(b)
    if k == 1 and b:
        i = draw.int(0, len(b) - 1)
        b[i] = draw.int(0, 255)
        return "byte set", bytes(b)
    if k == 2:
        return "truncate", bytes(b[: draw.int(0, max(0, len(b) - 1))])
    if k == 3:
        i = draw.int(0, len(b))
        return "insert", bytes(b[:i] + draw.bytes(draw.int(1, 16)) + b[i:])
    if k == 4 and b:
        i = draw.int(0, len(b) - 1)
        return "delete", bytes(b[:i] + b[i + draw.int(1, 16) :])
    if k == 5:
        i, j = draw.int(0, len(b)), draw.int(0, len(other))
        return "splice", bytes(b[:i]) + other[j:]
    if k == 6 and b:
        i = draw.int(0, len(b) - 1)
        n = draw.int(1, 32)
        return "duplicate", bytes(b[: i + n] + b[i : i + n] + b[i + n :])
    if k == 7 and len(b) >= 4:
        i = draw.int(0, len(b) - 4)
        b[i : i + 4] = struct.pack(">I", _interesting(draw, int.from_bytes(b[i : i + 4], "big"),
                                                      32))  # fmt: skip
        return "u32 set", bytes(b)
    return "append", bytes(b) + draw.bytes(draw.int(1, 16))


def byte_level(draw, data: bytes, other: bytes, fix_crc: bool) -> tuple[str, bytes]:
    """1-3 byte-level mutations of a valid stream's body; the CRC recomputed if ``fix_crc``
    (then the parser must cope), else the original CRC kept."""
    body = data[:-4]
    ops = []
    for _ in range(draw.int(1, 3)):
        op, body = mutate_bytes(draw, body, other[:-4])
        ops.append(op)
    label = "+".join(ops)
    if fix_crc:
        return f"bytes ({label}), CRC fixed", with_crc(body)
    return f"bytes ({label})", body + data[-4:]


# ---------------------------------------------------------------------------------------------
# Field-level mutations, CRC recomputed
# ---------------------------------------------------------------------------------------------

_VCZ_FIELDS = ("version", "model_type", "mode", "n_streams", "name", "weights_hash", "quality",
               "height", "width", "lengths", "swap streams", "stream bytes", "stream words",
               "stream cut", "stream append", "check")  # fmt: skip
_NAMES = (b"", b"cb-vr10", b"cb-vr8", b"ms-vr8", b"cb128-vr10", b"mnist-vae", b"mnist-vae-8bit",
          b"mnist-classifier", b"..", b"/", b"/etc", b"../cb-vr10", b"cb-vr10/../cb-vr8",
          b"\xff\xfe", b"a" * 255, b"CON", b"cb-vr10\0", b"\xc3\xa9")  # fmt: skip


def _mutate_stream(draw, s: bytes, what: str) -> bytes:
    b = bytearray(s)
    if what == "stream bytes" and b:
        i = draw.int(0, len(b) - 1)
        b[i] ^= 1 << draw.int(0, 7)
    elif what == "stream words" and len(b) >= 4:
        i = 4 * draw.int(0, len(b) // 4 - 1)
        b[i : i + 4] = draw.choice((b"\0\0\0\0", b"\xff\xff\xff\xff", draw.bytes(4)))
    elif what == "stream cut":
        b = b[: draw.int(0, max(0, len(b) - 1))]
    else:
        b += draw.choice((b"\0\0\0\0", b"\xff\xff\xff\xff", bytes(8), draw.bytes(draw.int(1, 9))))
    return bytes(b)


def _edit_header_field(draw, v, what: str, bits: dict[str, int], name_field: str) -> bool:
    """The edits both layouts share: a number field (``bits``: its width) to an interesting
    value, the model name to a known or random one, one bit of the weight hash flipped. False
    when ``what`` is none of these."""
    if what in bits:
        setattr(v, what, _interesting(draw, getattr(v, what), bits[what]))
    elif what == name_field:
        setattr(v, what, draw.choice(_NAMES) if draw.int(0, 1) else draw.bytes(draw.int(0, 12)))
    elif what == "weights_hash":
        v.weights_hash = _flip_a_bit(draw, v.weights_hash)
    else:
        return False
    return True


_VCZ_BITS = {"version": 8, "model_type": 8, "quality": 8, "mode": 4, "n_streams": 4,
             "height": 16, "width": 16}  # fmt: skip
_VCZL_BITS = {"version": 8, "flags": 8, "prec": 8, "grid": 8, "c": 8, "h": 16, "w": 16,
              "levels": 16, "n": 32, "pixel_crc": 32}  # fmt: skip


def _edit_fields(draw, v, fields, bits, name_field, edit) -> str:
    """1-2 edits of the parsed layout ``v`` (fields drawn from ``fields``); returns their
    names joined by ``+``."""
    whats = []
    for _ in range(draw.int(1, 2)):
        what = draw.choice(fields)
        whats.append(what)
        if not _edit_header_field(draw, v, what, bits, name_field):
            edit(draw, v, what)
    return "+".join(whats)


def vcz_field_edit(draw, data: bytes) -> tuple[str, bytes]:
    """1-2 field edits of a valid ``.vcz`` file, CRC recomputed."""
    v = parse_vcz(data)
    return "field " + _edit_fields(draw, v, _VCZ_FIELDS, _VCZ_BITS, "name", _vcz_edit), v.pack()


def _vcz_edit(draw, v, what: str) -> None:
    """The ``.vcz`` edits that are not :func:`_edit_header_field`'s."""
    if what == "lengths":
        k = draw.int(0, 2)
        if k == 0:  # another value, well-formed varints
            v.lengths = b"".join(varint(_interesting(draw, len(s), 32))
                                 for s in v.streams[:-1])  # fmt: skip
        elif k == 1:  # over-long varints (padding bytes 0x80)
            v.lengths = b"".join(varint(len(s))[:-1] + bytes([varint(len(s))[-1] | 0x80])
                                 + b"\x80" * draw.int(0, 5) + b"\x00"
                                 for s in v.streams[:-1])  # fmt: skip
        else:
            v.lengths = draw.bytes(draw.int(0, 6))
    elif what == "check":  # the symbols check (version 2): one bit, or dropped
        v.check = _flip_a_bit(draw, v.check) if v.check and draw.int(0, 3) else b""
    elif what == "swap streams" and len(v.streams) > 1:
        v.streams = v.streams[::-1]
    elif what.startswith("stream"):
        i = draw.int(0, len(v.streams) - 1)
        v.streams[i] = _mutate_stream(draw, v.streams[i], what)


_VCZL_FIELDS = ("version", "flags", "prec", "grid", "model", "weights_hash", "c", "h", "w",
                "levels", "n", "n+table", "table", "names", "scales", "pixel_crc", "lanes",
                "lane prefix", "lane words", "words", "words cut", "extra")  # fmt: skip
_FILE_NAMES = (b"", b".", b"..", b"../x.png", b"a/b.png", b"a\\b.png", b"a\nb.png", b"CON.png",
               b"nul.tar.png", b" lead.png", b"trail.", b"a:b.png", b"\xff.png",
               b"\xe2\x80\xae.png", b"D0.png", b"d0.png", b"d0.bmp", b"caf\xc3\xa9.png",
               b"cafe\xcc\x81.png", b"x" * 252 + b".png", b"x" * 256, b"ok.png")  # fmt: skip


def vczl_field_edit(draw, data: bytes) -> tuple[str, bytes]:
    """1-2 field edits of a valid ``VCZL`` stream, CRC recomputed (the image table rebuilt
    consistently when the image count or the names change)."""
    v = parse_vczl(data)
    return "field " + _edit_fields(draw, v, _VCZL_FIELDS, _VCZL_BITS, "model", _vczl_edit), v.pack()


def _vczl_edit(draw, v, what: str) -> None:
    """The ``VCZL`` edits that are not :func:`_edit_header_field`'s."""
    if what == "n+table":  # another image count with a table that agrees with it
        n = draw.choice((1, 2, v.n - 1, v.n + 1, 2 * v.n, 100, 1000, 3000,
                         draw.int(1, 1 << 16), (1 << 31) // max(1, v.c * v.h * v.w),
                         1 << 24))  # fmt: skip
        n = max(1, min(n, (1 << 24) + 1))  # the format's limit (and one more)
        if v.names is not None:
            n = min(n, 5000)  # keeps the fuzzer fast; the names make the table big
        v.n = n
        names = None
        if v.names is not None:
            names = [b"i%d.png" % i for i in range(n)]
        v.table = image_table(names, v.scales[:1] * n)
    elif what == "table":
        k = draw.int(0, 3)
        raw = b"".join(n + b"\0" for n in v.names or []) + v.scales  # as parsed
        if k == 0:
            v.table = zlib.compress(raw + draw.bytes(draw.int(1, 8)))
        elif k == 1:
            v.table = v.table + draw.bytes(draw.int(1, 4))
        elif k == 2:
            v.table = zlib.compress(raw * draw.choice((2, 1000, 100000)))  # a zip bomb
        else:
            v.table = draw.bytes(draw.int(0, 20))
    elif what == "names":
        names = list(v.names or [b"a.png"] * max(1, min(v.n, 5000)))
        i = draw.int(0, len(names) - 1)
        names[i] = draw.choice(_FILE_NAMES + tuple(names))
        if draw.int(0, 3) == 0:
            names.append(b"extra.png")
        v.table = image_table(names, v.scales)
        v.flags |= 1
    elif what == "scales":
        sc = bytearray(v.scales)
        sc[draw.int(0, len(sc) - 1)] = draw.choice((0, 1, 2, 255))
        v.table = image_table(v.names, bytes(sc))
    elif what == "lanes":
        k = draw.int(0, 2)
        if k == 0:
            v.lanes = v.lanes + [(draw.int(0, 40), 0)]
        elif k == 1 and len(v.lanes) > 1:
            v.lanes = v.lanes[:-1]
        else:  # all words in one lane / spread anew
            total = sum(nw for _p, nw in v.lanes)
            s = draw.int(1, max(1, min(v.n, 8)))
            split = [total // s] * s
            split[-1] += total - sum(split)
            v.lanes = [(v.lanes[min(i, len(v.lanes) - 1)][0], nw) for i, nw in enumerate(split)]
    elif what == "lane prefix":
        i = draw.int(0, len(v.lanes) - 1)
        p, nw = v.lanes[i]
        v.lanes[i] = (_interesting(draw, p, 32), nw)
    elif what == "lane words":
        i = draw.int(0, len(v.lanes) - 1)
        p, nw = v.lanes[i]
        v.lanes[i] = (p, _interesting(draw, nw, 32))
    elif what in ("words", "words cut"):
        v.words = _mutate_stream(draw, v.words,
                                 "stream words" if what == "words" else "stream cut")  # fmt: skip
    else:
        v.extra = draw.bytes(draw.int(1, 8))


# ---------------------------------------------------------------------------------------------
# One fuzz input
# ---------------------------------------------------------------------------------------------

KINDS = ("valid", "bytes, CRC fixed", "bytes", "fields", "fields then bytes", "random")


def fuzz_input(draw, seeds: list[bytes], parser: str) -> tuple[str, int, bytes]:
    """``(label, index of the seed or -1, bytes)``: one input derived from the valid ``seeds``
    of ``parser`` (``"vcz"`` or ``"lossless"``). A label starting with ``valid`` is an
    unchanged seed (it must decode exactly)."""
    i = draw.int(0, len(seeds) - 1)
    data, other = seeds[i], seeds[draw.int(0, len(seeds) - 1)]
    edit = vcz_field_edit if parser == "vcz" else vczl_field_edit
    kind = draw.choice((0, 1, 1, 1, 2, 3, 3, 3, 4, 5))
    if kind == 0:
        return "valid", i, data
    if kind == 1:
        label, out = byte_level(draw, data, other, fix_crc=True)
    elif kind == 2:
        label, out = byte_level(draw, data, other, fix_crc=False)
    elif kind == 3:
        label, out = edit(draw, data)
    elif kind == 4:
        label, out = edit(draw, data)
        label2, out = byte_level(draw, out, other, fix_crc=True)
        label = f"{label} then {label2}"
    else:
        magic = draw.choice((b"", VCZ_MAGIC + b"\x01", VCZL_MAGIC + b"\x01"))
        body = magic + draw.bytes(draw.int(0, 96))
        out = with_crc(body) if draw.int(0, 1) else body
        return "random bytes" + (" after a magic" if magic else ""), -1, out
    return label, i, out


# ---------------------------------------------------------------------------------------------
# Seeds and the property (public API only: vaecodec.encode_image / decode_image /
# compress_lossless / decompress_lossless, and the CLI)
# ---------------------------------------------------------------------------------------------

FINDINGS = ("mismatch", "wrong shape", "exception", "hang", "memory")
"""Outcomes that break the property (everything else is an exact decode, a clean refusal, or,
for the lossy format only, another well-formed image: damage behind a valid CRC that the
decoder cannot see, issue 18 point 5)."""

MEMORY_BOUND = 256 << 20
"""The fixed part of :func:`memory_bound`, in bytes."""
BYTES_PER_PIXEL = 300
"""What a .vcz decode may hold per pixel its header claims (the decoder measured 250-330 B/px
before tiling, issue 18 point 6)."""


def memory_bound(data: bytes) -> int:
    """The most decoding ``data`` may allocate over what the decoder held before, derived
    from the header: ``MEMORY_BOUND`` (256 MiB), plus for a .vcz file ``BYTES_PER_PIXEL``
    for each pixel of the H×W its header claims (the format admits up to 2^28, so the work a
    decoder does before it finds the payload too short is bounded only by the header). A VCZL
    stream gets no such allowance: its header may claim N·H·W up to 2^31 pixels, but what it
    can decode is bounded by its payload, and these inputs are at most a few kB. Measured as
    the peak of Python and numpy allocations (``tracemalloc``; torch's CPU allocator is not
    traced) and, in the long run, as the growth of the RSS high-water mark."""
    if data[:4] == VCZ_MAGIC and len(data) > 8 and len(data) >= 21 + data[7]:
        n = data[7]
        h, w = struct.unpack(">HH", data[17 + n : 21 + n])
        return MEMORY_BOUND + BYTES_PER_PIXEL * h * w
    return MEMORY_BOUND


def smooth_image(seed: int, h: int, w: int, grey: bool = False):
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), np.sin(4 * (xx + yy))], axis=2)
    img = (base * 90 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    return img[:, :, 0].copy() if grey else img


def digit_images(n: int, seed: int = 0, binary: bool = False):
    """``n`` MNIST-size (28x28) strokes, uint8: 0/255 if ``binary``, else grey levels."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(im).line([tuple(int(v) for v in rng.integers(5, 23, 2)) for _ in range(4)],
                                fill=255, width=3)  # fmt: skip
        if not binary:
            im = im.filter(ImageFilter.GaussianBlur(1))
        out.append(np.asarray(im))
    return np.stack(out)


class Timeout(Exception):
    """A decode took longer than the harness allows."""


class time_limit:
    """Raise :class:`Timeout` in the main thread once the process has used ``seconds`` of CPU
    time (SIGPROF), or after ``wall`` seconds of wall-clock time (SIGALRM; default
    ``10 * seconds + 60``). CPU time, so that a decode starved by other work on a shared
    machine is not taken for a hang; the wall-clock limit catches a decoder that blocks. Unix
    only; native code that never returns to Python is not interrupted (the long run's
    supervisor process catches that)."""

    def __init__(self, seconds: float, wall: float | None = None) -> None:
        self.seconds = seconds
        self.wall = 10 * seconds + 60 if wall is None else wall

    def __enter__(self):
        import signal

        def _cpu(signum, frame):
            raise Timeout(f"no result after {self.seconds} s of CPU time")

        def _wall(signum, frame):
            raise Timeout(f"no result after {self.wall} s")

        self._old = signal.signal(signal.SIGPROF, _cpu), signal.signal(signal.SIGALRM, _wall)
        signal.setitimer(signal.ITIMER_PROF, self.seconds)
        signal.setitimer(signal.ITIMER_REAL, self.wall)
        return self

    def __exit__(self, *exc):
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, self._old[0])
        signal.signal(signal.SIGALRM, self._old[1])
        return False


@dataclass
class Outcome:
    kind: str  # "exact", "decoded other", "refused", or one of FINDINGS
    detail: str = ""
    seconds: float = 0.0
    peak_bytes: int = 0

    @property
    def finding(self) -> bool:
        return self.kind in FINDINGS


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback inside vaecodec, as ``file:line (function)``."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "vaecodec" in f.filename]
    f = (frames or traceback.extract_tb(exc.__traceback__) or [None])[-1]
    if f is None:
        return "?"
    path = f.filename.split("src/")[-1]
    return f"{path}:{f.lineno} ({f.name})"


class Target:
    """A parser under test: valid seeds, their true decodes, and how to decode and judge."""

    parser = ""
    modules: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.seeds: list[bytes] = []
        self.truths: list = []

    def decode(self, data: bytes):  # pragma: no cover
        raise NotImplementedError

    def judge(self, data: bytes, decoded) -> tuple[str, str]:  # pragma: no cover
        raise NotImplementedError

    def run(self, data: bytes, seconds: float = 10.0, decode=None) -> Outcome:
        """Decode ``data`` under the time limit and judge the result. Peak traced memory is
        measured when ``tracemalloc`` is tracing."""
        import time
        import tracemalloc

        from vaecodec.errors import FormatError

        decode = decode or self.decode
        tracing = tracemalloc.is_tracing()
        if tracing:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        t0 = time.perf_counter()
        try:
            with time_limit(seconds):
                decoded = decode(data)
        except Timeout as e:
            out = Outcome("hang", str(e))
        except FormatError as e:
            out = Outcome("refused", str(e)[:160])
        except MemoryError as e:
            out = Outcome("memory", f"MemoryError at {_where(e)}")
        except Exception as e:  # the property: nothing but FormatError
            out = Outcome("exception", f"{type(e).__name__}: {str(e)[:200]} at {_where(e)}")
        else:
            out = Outcome(*self.judge(data, decoded))
        out.seconds = time.perf_counter() - t0
        if tracing:
            out.peak_bytes = max(0, tracemalloc.get_traced_memory()[1] - base)
            if out.peak_bytes > memory_bound(data) and not out.finding:
                out = Outcome("memory", f"{out.peak_bytes >> 20} MiB traced ({out.kind})",
                              out.seconds, out.peak_bytes)  # fmt: skip
        return out


class VczTarget(Target):
    """Lossy ``.vcz`` files of the zoo codec ``cb-vr10`` (variable rate): a 64x64 RGB image
    at qualities 1 and 5 and a 40x48 greyscale one at quality 3; decoded with
    ``vaecodec.decode_image`` and one loaded codec (the header's quality picks the level)."""

    parser = "vcz"
    modules = ("vaecodec/coding/container.py", "vaecodec/coding/entropy.py",
               "vaecodec/models/codecs.py", "vaecodec/compression/lossy.py")  # fmt: skip

    def __init__(self) -> None:
        import vaecodec

        super().__init__()
        self.codec = vaecodec.load_codec("cb-vr10", quality=5)
        for q, img in ((5, smooth_image(0, 64, 64)), (1, smooth_image(1, 64, 64)),
                       (3, smooth_image(2, 40, 48, grey=True))):  # fmt: skip
            data = vaecodec.encode_image(vaecodec.load_codec("cb-vr10", quality=q), img)
            self.seeds.append(data)
            self.truths.append(vaecodec.decode_image(data, self.codec).image)

    def decode(self, data: bytes):
        import vaecodec

        return vaecodec.decode_image(data, self.codec).image

    def judge(self, data: bytes, img) -> tuple[str, str]:
        import numpy as np

        if data in self.seeds:
            ok = np.array_equal(img, self.truths[self.seeds.index(data)])
            return ("exact", "") if ok else ("mismatch", "a valid file decodes to other pixels")
        v = parse_vcz(data)  # it was accepted, so its header is well-formed
        shape = (v.height, v.width) + ((3,) if v.mode == 0 else ())
        if img.dtype != np.uint8 or img.shape != shape:
            return "wrong shape", f"{img.dtype} {img.shape}, header says {shape}"
        if any(t.shape == img.shape and np.array_equal(t, img) for t in self.truths):
            return "exact", ""
        return "decoded other", f"{shape}"


class VczlTarget(Target):
    """Lossless ``VCZL`` streams: three 28x28 grey digits with the zoo model
    ``mnist-vae-8bit`` (``vaecodec.compress_lossless``, anonymous), and named streams written
    by ``vaecodec compress --lossless`` (two binary digits with ``mnist-vae``, one grey digit
    with ``mnist-vae-8bit``); decoded with ``vaecodec.decompress_lossless``."""

    parser = "lossless"
    modules = ("vaecodec/coding/lossless_format.py", "vaecodec/compression/lossless.py",
               "vaecodec/models/bitsback.py")  # fmt: skip

    def __init__(self, workdir) -> None:
        import os

        import numpy as np
        from PIL import Image

        import vaecodec
        from vaecodec.cli import main

        super().__init__()
        imgs = digit_images(3, 0)
        self.seeds.append(vaecodec.compress_lossless(imgs, "mnist-vae-8bit"))
        self.truths.append(imgs)
        for k, (model, images) in enumerate((("mnist-vae", digit_images(2, 1, binary=True)),
                                             ("mnist-vae-8bit", digit_images(1, 2)))):  # fmt: skip
            paths = []
            for i, a in enumerate(images):
                paths.append(os.path.join(workdir, f"s{k}_d{i}.png"))
                Image.fromarray(a).save(paths[-1])
            out = os.path.join(workdir, f"s{k}.vczl")
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                rc = main(["compress", "--lossless", "--model", model, *paths, "-o", out])
            assert rc == 0, rc
            with open(out, "rb") as f:
                self.seeds.append(f.read())
            self.truths.append(np.asarray(images))
        for data, truth in zip(self.seeds, self.truths):
            assert np.array_equal(vaecodec.decompress_lossless(data), truth)

    def decode(self, data: bytes):
        import vaecodec

        return vaecodec.decompress_lossless(data)

    def judge(self, data: bytes, imgs) -> tuple[str, str]:
        import numpy as np

        if any(t.shape == imgs.shape and np.array_equal(t, imgs) for t in self.truths):
            return "exact", ""
        return "mismatch", f"accepted, decodes to {imgs.dtype} {imgs.shape} that no seed holds"

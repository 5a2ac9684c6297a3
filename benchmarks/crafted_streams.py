"""How many damaged or crafted `.vcz` files with a *valid* CRC does the decoder refuse?

A CRC-32 catches accidents; a crafted file (or damage behind a recomputed CRC) reaches the
entropy decoder. This script makes such files from real ones written by a bundled codec, fixes
up their CRC, and decodes each three times: as a version-1 file (the same damage, the file
rewritten without its symbols check) without the end-of-payload check (``SymbolDecoder.finish``:
the range decoder must have consumed its payload exactly; the decoder as it was before issue
18, point 5), as a version-1 file with it (before issue 27, point 3), and as the version-2 file
it is, whose symbols check (a hash of the header and the decoded integer latents) the decoder
compares. Each file is counted as refused (FormatError), decoded (with its PSNR against the
true decode when the size is unchanged), or crashed (any other exception: a bug).

    python benchmarks/crafted_streams.py [--model cb-vr10] [--quality 1 5] [--flips 60]
"""

from __future__ import annotations

import argparse
import json
import struct
import time
import zlib

import numpy as np
import torch


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def _image(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), np.sin(4 * (xx + yy))], axis=2)
    img = (base * 90 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255)
    return img.astype(np.uint8)


def crafted(data: bytes, rng: np.random.Generator, flips: int) -> list[tuple[str, bytes]]:
    """(kind, bytes with a valid CRC) variants of one valid file."""
    from vaecodec.coding.container import unpack

    header, streams = unpack(data)
    body = data[:-4]
    payload_start = len(body) - sum(len(s) for s in streams)
    name_len = body[7]
    q_pos, h_pos = 8 + name_len + 8, 8 + name_len + 9
    out = []
    for _ in range(flips):
        b = bytearray(body)
        pos = int(rng.integers(payload_start, len(b)))
        b[pos] ^= 1 << int(rng.integers(0, 8))
        out.append(("bit flip in a payload", bytes(b)))
    for cut in (1, 3, 4, 8, 16, 64):
        if len(body) - cut > payload_start:
            out.append(("payload truncated", body[:-cut]))
    for extra in (b"\0\0\0\0", b"\xff\xff\xff\xff", bytes(8), bytes(range(16))):
        out.append(("bytes appended to the last payload", body + extra))
    for dq in (-1, 1, 2):
        b = bytearray(body)
        b[q_pos] = max(1, min(255, b[q_pos] + dq))
        if bytes(b) != body:
            out.append(("header: another quality", bytes(b)))
    for dh, dw in ((1, 0), (0, 1), (16, 0), (-8, 0), (64, 64)):
        b = bytearray(body)
        h, w = struct.unpack(">HH", b[h_pos : h_pos + 4])
        b[h_pos : h_pos + 4] = struct.pack(">HH", max(1, h + dh), max(1, w + dw))
        out.append(("header: another size", bytes(b)))
    b = bytearray(body)
    b[6] ^= 1  # RGB <-> L
    out.append(("header: another mode", bytes(b)))
    if len(streams) == 2:  # the y stream's length varint: y gets bytes of z or loses its own
        first = len(streams[0])
        for new in (0, max(0, first - 4), first + 4):
            if new < 128 and first < 128:  # keep the varint one byte long
                b = bytearray(body)
                b[payload_start - 1] = new
                out.append(("header: another stream length", bytes(b)))
    return [(kind, _with_crc(b)) for kind, b in out]


def as_version_1(data: bytes) -> bytes:
    """The same file in the version-1 layout: no symbols check, version byte 1, CRC fixed."""
    body = bytearray(data[:-4])
    if body[4] != 2:
        return data
    check_at = 8 + body[7] + 8 + 5  # after name, weights hash, quality, height, width
    del body[check_at : check_at + 4]
    body[4] = 1
    return _with_crc(bytes(body))


def decode_outcome(data: bytes, model_for, truth: np.ndarray):
    from vaecodec.coding.container import unpack
    from vaecodec.compression.lossy import decode_image
    from vaecodec.errors import FormatError, VaecodecError

    try:
        parsed = unpack(data)
        img, _ = decode_image(data, model_for(parsed[0]), parsed)
    except (FormatError, VaecodecError):
        return "refused", None
    except Exception as e:  # a bug: every refusal must be a FormatError
        return f"crashed ({type(e).__name__})", None
    if img.shape != truth.shape:
        return "decoded", None
    mse = float(np.mean((img.astype(np.float64) - truth) ** 2))
    return "decoded", 10 * np.log10(255**2 / mse) if mse else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="cb-vr10")
    ap.add_argument("--quality", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--flips", type=int, default=30, help="bit-flipped files per original")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vaecodec.coding import entropy
    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.zoo.codecs import load_codec

    models = {}

    def model_for(header):
        q = header.codec.quality
        if q not in models:
            models[q] = load_codec(args.model, q)
        return models[q]

    rng = np.random.default_rng(args.seed)
    cases = []
    for q in args.quality:
        for i in range(args.images):
            data = encode_image(load_codec(args.model, q), _image(i))
            truth = decode_image(data, load_codec(args.model, q))[0].astype(np.float64)
            cases += [(kind, b, truth) for kind, b in crafted(data, rng, args.flips)]
    t0 = time.perf_counter()
    finish = entropy.SymbolDecoder.finish
    results = {}
    runs = (("version 1, without end-of-payload check", False, as_version_1),
            ("version 1, with it", True, as_version_1),
            ("version 2 (symbols check)", True, lambda d: d))  # fmt: skip
    for label, check, layout in runs:
        entropy.SymbolDecoder.finish = finish if check else (lambda self: None)
        rows = {}
        for kind, data, truth in cases:
            data = layout(data)
            outcome, psnr = decode_outcome(data, model_for, truth)
            r = rows.setdefault(kind, {"files": 0, "refused": 0, "decoded": 0, "psnr": []})
            r["files"] += 1
            key = outcome if outcome in ("refused", "decoded") else "crashed"
            r[key] = r.get(key, 0) + 1
            if psnr is not None and np.isfinite(psnr):
                r["psnr"].append(round(psnr, 1))
        results[label] = rows
    entropy.SymbolDecoder.finish = finish
    summary = {"model": args.model, "qualities": args.quality, "files": len(cases),
               "seconds": round(time.perf_counter() - t0, 1), "results": results}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{len(cases)} crafted files with valid CRCs ({args.model} q{args.quality}, "
          f"{args.images} images each)")  # fmt: skip
    for label, rows in results.items():
        tot = sum(r["refused"] for r in rows.values())
        print(f"\n{label}: {tot}/{len(cases)} refused")
        for kind, r in rows.items():
            ps = r["psnr"]
            span = f", PSNR of decoded {min(ps):.1f}-{max(ps):.1f} dB" if ps else ""
            crash = f", CRASHED {r['crashed']}" if r.get("crashed") else ""
            print(f"  {kind:38s} {r['refused']:3d}/{r['files']:3d} refused{span}{crash}")


if __name__ == "__main__":
    main()

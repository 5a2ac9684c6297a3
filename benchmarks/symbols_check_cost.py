"""What the symbols check of ``.vcz`` version 2 costs: bytes and time.

For Kodak images at a few qualities of a bundled codec: the file size (version 2 is 4 bytes
longer than the same file as version 1), the decode time of the version-2 file (the check
computed and compared) against the same file rewritten as version 1 (no check), and the time
of the check's parts on the encoder (decoding ``z^`` again, hashing the latents). Interleaved
repetitions, median; one torch thread.

    nice python benchmarks/symbols_check_cost.py [--model cb-vr10] [--quality 1 5 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cb-vr10")
    p.add_argument("--quality", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--images", nargs="+", default=["kodim01.png", "kodim04.png", "kodim23.png"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", help="JSON result")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from _common import kodak_dir, lower_priority
    from crafted_streams import as_version_1
    from PIL import Image

    from vaecodec.coding.container import symbols_check, unpack
    from vaecodec.compression.lossy import decode_image, encode_image, latent_symbols
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(1)
    lower_priority()
    rows = []
    for q in args.quality:
        model = load_codec(args.model, q)
        for name in args.images:
            with Image.open(Path(kodak_dir()) / name) as im:
                img = np.asarray(im.convert("RGB"))
            v2 = encode_image(model, img)
            v1 = as_version_1(v2)
            assert np.array_equal(decode_image(v1, model).image, decode_image(v2, model).image)
            times = {"decode v1": [], "decode v2": [], "encoder check": []}
            header, streams = unpack(v2)
            strings = [[s] for s in streams]
            shape = model.latent_shape(header.height, header.width)
            y_hat = model.decompress_latents(strings, shape)
            for _ in range(args.repeats):
                for key, data in (("decode v1", v1), ("decode v2", v2)):
                    t = time.perf_counter()
                    decode_image(data, model)
                    times[key].append(time.perf_counter() - t)
                t = time.perf_counter()  # what encode_image adds: z^ decoded again, the hash
                symbols_check(header, len(streams), latent_symbols(model, y_hat, strings, shape))
                times["encoder check"].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"quality": q, "image": name, "bytes_v1": len(v1), "bytes_v2": len(v2),
                         **{k.replace(" ", "_") + "_s": round(v, 4) for k, v in med.items()}})  # fmt: skip
            r = rows[-1]
            print(f"q{q} {name}: {r['bytes_v1']} -> {r['bytes_v2']} bytes "
                  f"(+{100 * 4 / r['bytes_v1']:.2f} %), decode {med['decode v1']:.3f} s -> "
                  f"{med['decode v2']:.3f} s, encoder's check {med['encoder check']:.4f} s",
                  flush=True)  # fmt: skip
    dec1 = sum(r["decode_v1_s"] for r in rows)
    dec2 = sum(r["decode_v2_s"] for r in rows)
    enc = sum(r["encoder_check_s"] for r in rows)
    summary = {"model": args.model, "rows": rows,
               "decode_time_ratio": round(dec2 / dec1, 4),
               "encoder_check_s_per_image": round(enc / len(rows), 4),
               "bytes_added_per_file": 4}  # fmt: skip
    print(f"decode time v2 / v1: {dec2 / dec1:.3f}; the check on the encoder: "
          f"{enc / len(rows) * 1000:.1f} ms per image")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

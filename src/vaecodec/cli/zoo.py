"""``vaecodec zoo``: list the bundled pretrained models."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list the bundled pretrained models")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def zoo_summary() -> dict:
    """The JSON object ``vaecodec zoo --json`` prints.

    ``{"models": {NAME: {"model", "kind", "description", "dataset", ...}},
       "default_codec": NAME | None, "codecs": {NAME: {"qualities": [...], ...}}}``
    """
    from vaecodec.zoo import zoo_entries

    models = {}
    for name, meta in zoo_entries().items():
        models[name] = {
            "model": meta.get("model"),
            "kind": meta.get("kind"),
            "description": meta.get("description", ""),
            "dataset": meta.get("dataset"),
            "metrics": meta.get("metrics", {}),
        }
    out = {"models": models, "default_codec": None, "codecs": {}}
    from vaecodec.zoo.codecs import codec_summary

    out.update(codec_summary())
    return out


def run(args) -> int:
    summary = zoo_summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if not summary["models"] and not summary["codecs"]:
        print("no bundled models")
        return 0
    print(f"{'name':<22} {'kind':<8} {'model':<16} description")
    for name, m in summary["models"].items():
        print(f"{name:<22} {m['kind'] or '?':<8} {m['model'] or '?':<16} {m['description']}")
    for name, c in summary["codecs"].items():
        default = " (default)" if name == summary["default_codec"] else ""
        print(f"{name:<22} {'codec':<8} {c.get('model') or '?':<16} {c.get('description', '')}"
              f"{default}")  # fmt: skip
        for q, lm in zip(c.get("qualities", []), c.get("lmbdas", [])):
            m = c.get("metrics", {}).get(str(q), {})
            kodak = ""
            if m.get("kodak_bpp") is not None:
                kodak = f"  Kodak {m['kodak_bpp']:.3f} bpp, {m['kodak_psnr']:.2f} dB PSNR"
            print(f"{'':<22}   quality {q}: lmbda {lm}{kodak}")
    return 0

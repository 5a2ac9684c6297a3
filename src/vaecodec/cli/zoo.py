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
    from vaecodec.zoo.realism import realism_entries

    out.update(codec_summary())
    out["realism_decoders"] = {
        name: {"base_codec": meta.get("base_codec"), "qualities": meta.get("qualities", []),
               "description": meta.get("description", "")}
        for name, meta in realism_entries().items()
    }  # fmt: skip
    return out


def run(args) -> int:
    summary = zoo_summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if not summary["models"] and not summary["codecs"]:
        print("no bundled models")
        return 0
    rows = [(name, m["kind"] or "?", m["model"] or "?", m["description"], name)
            for name, m in summary["models"].items()]  # fmt: skip
    for name, c in summary["codecs"].items():
        default = " (default)" if name == summary["default_codec"] else ""
        rows.append((name, "codec", c.get("model") or "?", c.get("description", "") + default,
                     name))  # fmt: skip
    for name, r in summary.get("realism_decoders", {}).items():
        qualities = ", ".join(map(str, r["qualities"]))
        rows.append((name, "realism", "g_s", r["description"] or f"realism decoder for "
                     f"{r['base_codec']} at qualities {qualities} (vaecodec decompress "
                     "--realism)", name))  # fmt: skip
    # the columns as wide as their longest entry, so that every row lines up
    w_name, w_kind, w_model = (max(len(r[i]) for r in [("name", "kind", "model"), *rows])
                               for i in range(3))  # fmt: skip
    print(f"{'name':<{w_name}} {'kind':<{w_kind}} {'model':<{w_model}} description")
    for name, kind, model, description, key in rows:
        print(f"{name:<{w_name}} {kind:<{w_kind}} {model:<{w_model}} {description}")
        c = summary["codecs"].get(key) if kind == "codec" else None
        for q, lm in zip((c or {}).get("qualities", []), (c or {}).get("lmbdas", [])):
            m = c.get("metrics", {}).get(str(q), {})
            kodak = ""
            if m.get("kodak_bpp") is not None:
                kodak = f"  Kodak {m['kodak_bpp']:.3f} bpp, {m['kodak_psnr']:.2f} dB PSNR"
            print(f"{'':<{w_name}}   quality {q}: lmbda {lm}{kodak}")
    return 0

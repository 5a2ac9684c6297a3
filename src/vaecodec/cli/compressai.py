"""``vaecodec import-compressai`` and ``export-compressai``: CompressAI checkpoints in and out
(:mod:`vaecodec.zoo.compressai`).

Usage::

    vaecodec import-compressai CHECKPOINT... --arch bmshj2018-hyperprior -o DIR \\
        [--qualities 1 2 ...] [--lmbda L ...] [--force]
    vaecodec export-compressai --model NAME|DIR [--quality Q] -o FILE.pth.tar [--force]

One checkpoint becomes a run directory, several (in quality order) a codec family; either is
then a ``--model`` for ``compress``, ``decompress``, ``bench-codec`` and ``serve``. Each
command prints one line per model written; a bad checkpoint is one error line, exit status 2,
and nothing written.
"""

from __future__ import annotations


def register(sub) -> None:
    from vaecodec.zoo.compressai import ARCHITECTURES

    p = sub.add_parser(
        "import-compressai",
        help="turn CompressAI checkpoints into a vaecodec run directory or codec family",
        description="Read CompressAI checkpoints (torch.load with weights_only=True) of one "
        "architecture and write a vaecodec run directory (one checkpoint) or codec family "
        "(several, one quality each, in the order given) that every --model option takes.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="CompressAI .pth / .pth.tar files, fewest bits first")  # fmt: skip
    p.add_argument("--arch", required=True,
                   help=f"CompressAI's architecture name: {', '.join(ARCHITECTURES)} (others are "
                        "refused with the reason)")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="folder to write")
    p.add_argument("--qualities", type=int, nargs="+",
                   help="quality number of each checkpoint (default 1, 2, ...)")  # fmt: skip
    p.add_argument("--lmbda", type=float, nargs="+",
                   help="the lambda each checkpoint was trained with (recorded only)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run_import)

    p = sub.add_parser(
        "export-compressai",
        help="write a vaecodec codec as a CompressAI state dict",
        description="Write a factorized, hyperprior or mean-scale (LeakyReLU) codec as a "
        "state dict that CompressAI's from_state_dict / load_state_dict and "
        "`python -m compressai.utils.eval_model checkpoint` accept.",
    )
    p.add_argument("--model", required=True, help="codec family or run directory")
    p.add_argument("--quality", type=int, help="quality within a family (default: its default)")
    p.add_argument("-o", "--output", required=True, help="file to write (e.g. model.pth.tar)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_export)


def run_import(args) -> int:
    from vaecodec.zoo.compressai import import_compressai

    rec = import_compressai(args.checkpoints, args.arch, args.output, args.qualities,
                            args.lmbda, args.force)  # fmt: skip
    for q in rec["qualities"]:
        cfg = q["config"]
        where = rec["out"] if q["dir"] == "." else f"{rec['out']}/{q['dir']}"
        print(f"{q['checkpoint']} -> {where}: {args.arch} as vaecodec {rec['model']} "
              f"(N={cfg['N']}, M={cfg['M']}), quality {q['quality']}")  # fmt: skip
    print(f"use it with: vaecodec compress --model {rec['out']} IMAGE")
    return 0


def run_export(args) -> int:
    from vaecodec.zoo.compressai import export_compressai

    rec = export_compressai(args.model, args.output, args.quality, args.force)
    print(f"{args.model} quality {rec['quality']} -> {rec['out']}: CompressAI {rec['arch']} "
          f"state dict (N={rec['N']}, M={rec['M']})")  # fmt: skip
    return 0

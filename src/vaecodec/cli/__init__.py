"""The ``vaecodec`` command.

Each module in this package adds its subcommands through ``register(subparsers)``:

- ``cli.vae``: train, eval, sample, reconstruct, interpolate, traverse, embed, experiment
- ``cli.zoo``: zoo
- ``cli.codec``: compress, decompress, train-codec
- ``cli.bench_codec``: bench-codec
- ``cli.lossless``: bench-lossless (``compress --lossless`` lives in ``cli.codec``)
- ``cli.serve``: serve (the local web application, :mod:`vaecodec.serve`)
- ``cli.shards``: make-shards (WebDataset tar shards for streamed training)
- ``cli.compressai``: import-compressai, export-compressai

Errors a user can cause are :class:`vaecodec.errors.VaecodecError`; they are printed as one
line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vaecodec import __version__
from vaecodec.errors import VaecodecError

_COMMAND_MODULES = ("vae", "zoo", "codec", "bench_codec", "lossless", "serve", "realism",
                    "shards", "compressai")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, ``(default: 30)``, unless it is None or False
    (an option that is off or chosen automatically says so in its own words)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaecodec",
        description="Variational autoencoders as generative models and as image codecs.",
    )
    parser.add_argument("--version", action="version", version=f"vaecodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        mod = importlib.import_module(f"vaecodec.cli.{name}")
        register = getattr(mod, "register", None) or getattr(mod, f"register_{name}")
        register(sub)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
    return parser


def add_run_args(p: argparse.ArgumentParser, out: str, resumed: str) -> None:
    """``--threads``, ``--out`` and ``--resume``, as every resumable training command has them;
    ``resumed`` lists the options that a resumed run takes from the new command line (the others
    come from the run's record)."""
    from vaecodec.runtime import THREADS_HELP

    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--out", default=out, help="run directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run in --out from its last checkpoint with its saved settings; "
        f"{resumed} are this invocation's",
    )


_OWN_THREADS = {"serve"}
"""Commands with ``--threads`` that set torch's thread count themselves (per worker)."""


def main(argv: list[str] | None = None) -> int:
    from vaecodec import runtime

    runtime.start_sample()  # the load while torch is imported, for the default --threads
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.given = given_options(parser, args.command, sys.argv[1:] if argv is None else argv)
    threads = hasattr(args, "threads") and args.command not in _OWN_THREADS
    before = _torch_threads() if threads else None
    try:
        if threads:  # its line is held back until the command starts its work (announce)
            runtime.configure(getattr(args, "threads", None), defer=True)
        rc = args.func(args)
        runtime.announce()  # a command that did not say when its work started: after it
    except VaecodecError as e:
        print(f"vaecodec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = _resume_hint(args, sys.argv[1:] if argv is None else argv)
        print(f"vaecodec {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        runtime.drop_note()
        if threads:
            _torch_threads(before)  # main() called in-process leaves torch as it found it
    return int(rc or 0)


def given_options(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> set[str]:
    """The destinations of the options that ``argv`` gives explicitly to ``command`` (not left
    at their defaults): a resumed run compares them with the run's own settings."""
    try:
        sub = parser._subparsers._group_actions[0].choices[command]
        rest = list(argv)[list(argv).index(command) + 1 :]
    except (AttributeError, IndexError, KeyError, ValueError):
        return set()
    saved = [(a, a.default) for a in sub._actions]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        ns, _ = sub.parse_known_args(rest)
    except SystemExit:  # cannot happen after a successful parse; nothing is known then
        return set()
    finally:
        for a, d in saved:
            a.default = d
    return set(vars(ns))


def _torch_threads(n: int | None = None) -> int:
    import torch

    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


_RESUMABLE = {"train": "train_state.json", "train-codec": "last/train_state.json",
              "train-realism": "last/train_state.json"}
"""Training commands with ``--resume``, and the file that says a run directory can resume."""


def _resume_hint(args, argv: list[str]) -> str:
    """What an interrupted training run can do next: the same command with ``--resume`` when
    its ``--out`` holds a saved state (``train`` saves after every epoch, ``train-codec`` at
    every validation), else start again."""
    state = _RESUMABLE.get(args.command)
    out = getattr(args, "out", None)
    if state is None or out is None:
        return ""
    import shlex
    from pathlib import Path

    if (Path(out) / state).is_file():
        again = shlex.join(["vaecodec", *argv, *([] if "--resume" in argv else ["--resume"])])
        return f"; {out} keeps the last saved state: continue with `{again}`"
    return f"; nothing was saved in {out} yet: run the command again to start over"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

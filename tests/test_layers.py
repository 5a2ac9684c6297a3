"""The package's layers (docs/DESIGN.md, "Layers"): no module imports one of a higher layer,
at the top of the file or inside a function (a lazy import may save start-up time, never hide
a cycle). Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [
    ("errors", ["vaecodec.errors"]),
    ("utilities", ["vaecodec.fileio", "vaecodec.runtime"]),
    ("files of weights", ["vaecodec.checkpoint"]),
    ("primitives", ["vaecodec.coding", "vaecodec.nn", "vaecodec.data", "vaecodec.distributions",
                    "vaecodec.evaluate.metrics", "vaecodec.evaluate.bdrate",
                    "vaecodec.evaluate.classical", "vaecodec.viz.training_plot",
                    "vaecodec.viz.rd_plot"]),
    ("priors", ["vaecodec.priors"]),
    ("models", ["vaecodec.models", "vaecodec.evaluate.elbo", "vaecodec.viz"]),
    ("zoo", ["vaecodec.zoo"]),
    ("application", ["vaecodec.compression", "vaecodec.train"]),
    ("evaluation", ["vaecodec.evaluate"]),
    ("experiments", ["vaecodec.experiments"]),
    ("experiments built on experiments", ["vaecodec.experiments_gan",
                                          "vaecodec.experiments_hvae"]),
    ("interfaces", ["vaecodec.api", "vaecodec.serve"]),
    ("command line", ["vaecodec.cli"]),
]  # fmt: skip
"""Lowest first. A module may import its own package (same prefix) and any lower layer."""


def _layer(module: str) -> tuple[int, str]:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (rank, p)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/DESIGN.md")
    return best


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaecodec"):
            for a in node.names:  # `from vaecodec.pkg import module` names that module
                sub = f"{node.module}.{a.name}"
                is_mod = (SRC / sub.replace(".", "/")).with_suffix(".py").exists()
                out.append(sub if is_mod or (SRC / sub.replace(".", "/")).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("vaecodec")]
    return out


def test_no_import_goes_up_a_layer():
    wrong = []
    for path in sorted((SRC / "vaecodec").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if module in ("vaecodec", "vaecodec.__main__"):  # the facade re-exports the API
            continue
        rank, own = _layer(module)
        for target in _imports(path):
            if target == "vaecodec":  # the version string
                continue
            t_rank, t_own = _layer(target)
            if t_rank > rank or (t_rank == rank and t_own != own):
                wrong.append(f"{module} ({LAYERS[rank][0]}) imports {target} "
                             f"({LAYERS[t_rank][0]})")  # fmt: skip
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(set(wrong)))

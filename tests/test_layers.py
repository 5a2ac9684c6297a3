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


def _module_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (lazy imports included)."""
    graph = {}
    for path in sorted((SRC / "vaecodec").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if module not in ("vaecodec", "vaecodec.__main__"):
            graph[module] = {t for t in _imports(path) if t != "vaecodec"}
    names = set(graph)

    def owner(target: str) -> str | None:  # a name inside a module -> that module
        while target not in names and "." in target:
            target = target.rsplit(".", 1)[0]
        return target if target in names else None

    return {m: {o for t in ts if (o := owner(t)) and o != m} for m, ts in graph.items()}


def test_no_two_modules_import_each_other():
    """Issue 27 point 10: train/vae_trainer.py and train/vaegan_trainer.py imported each other
    (one lazily); the layers allow that inside a package, so it is checked here: the import
    graph, lazy imports included, has no cycle."""
    graph = _module_graph()
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)

"""The README says only what is true: its Python snippets run, and its links resolve."""

import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_a_python_api_section_with_snippets():
    snippets = python_snippets(_section(README.read_text(), "Python API"))
    assert len(snippets) >= 4  # VAE, codec bytes/files, training your own, bits-back


@pytest.mark.parametrize("i", range(4))
def test_readme_python_snippet_runs(i, tmp_path, monkeypatch):
    """Each snippet runs as written, in a fresh namespace, in a folder holding the
    ``photo.png`` the codec snippet opens."""
    snippets = python_snippets(_section(README.read_text(), "Python API"))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    photo = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((6, 6, 1))).astype(np.uint8)
    Image.fromarray(photo).save("photo.png")
    exec(compile(snippets[i], f"README.md python snippet {i + 1}", "exec"), {})
    if "photo.vcz" in snippets[i]:  # the file it wrote is a real .vcz: the CLI decodes it
        from vaecodec.cli import main

        assert main(["decompress", "photo.vcz", "-o", "cli.png"]) == 0
        assert np.array_equal(np.asarray(Image.open("cli.png")),
                              np.asarray(Image.open("restored.png")))  # fmt: skip


def test_public_api_is_what_all_names():
    import inspect

    import vaecodec

    for name in vaecodec.__all__:
        obj = getattr(vaecodec, name)
        if inspect.isfunction(obj):  # typed: every argument and the result
            sig = inspect.signature(obj)
            assert sig.return_annotation is not sig.empty, name
            assert all(p.annotation is not p.empty for p in sig.parameters.values()), name
    model, meta = vaecodec.load_model("mnist-vae")  # a named pair, unpacked as before
    assert vaecodec.load_model("mnist-vae").meta == meta and model.kind == "vae"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    h = heading.strip().lower()
    h = "".join(c for c in h if c in " -_" or unicodedata.category(c)[0] in "LN")
    return h.replace(" ", "-")


PENDING: set[str] = set()
"""Links to sections that work in progress writes later; remove an entry when its section
lands (test_pending_links_are_still_missing says when)."""


def _broken(link: str) -> str | None:
    """Why a relative README link does not resolve, or None."""
    path, _, frag = link.partition("#")
    target = ROOT / path if path else README
    if not target.exists():
        return f"{path} does not exist"
    if frag:
        prose = re.sub(r"^```.*?^```", "", target.read_text(), flags=re.S | re.M)
        headings = re.findall(r"^#+ (.+)$", prose, flags=re.M)
        if frag not in {_anchor(h) for h in headings}:
            return f"no such section in {path or 'README.md'}"
    return None


def _links() -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    return [x for x in links if not x.startswith(("http://", "https://"))]


def test_readme_links_to_files_and_sections_resolve():
    links = _links()
    assert links
    broken = {x: _broken(x) for x in links if x not in PENDING}
    assert not {x: why for x, why in broken.items() if why}


def test_pending_links_are_still_missing():
    """An entry of PENDING whose section exists now must leave the list."""
    for link in PENDING:
        if link in _links():
            assert _broken(link), f"{link} resolves now: remove it from PENDING"

"""Import CompressAI 1.2.8 (a test-only dependency) without the packages its image models never
use: its package ``__init__`` imports torchvision's transforms, torch_geometric's (point
clouds), pandas and einops. torchvision has no CPU build here (from PyPI it pulls a CUDA torch
that replaces the CPU one), so for whichever of those four is missing, :func:`load_compressai`
puts an inert stand-in module on the import path while CompressAI is imported, and takes it off
again. Used by tests/test_compressai.py and benchmarks/compressai_interop.py; nothing under
``src/`` imports CompressAI.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

_STAND_INS = ("torchvision", "torch_geometric", "pandas", "einops")


class _Inert:
    """Any attribute of a stand-in module: a class that takes any arguments, and, called, gives
    back its first argument (so it also works as a decorator)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, f=None, *args, **kwargs):
        return f


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Inert,), {})
        setattr(self, name, cls)
        return cls


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = tuple(roots)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def load_compressai():
    """CompressAI's image models and its eval_model loader, or None if it is not installed."""
    if importlib.util.find_spec("compressai") is None:
        return None
    missing = [m for m in _STAND_INS if importlib.util.find_spec(m) is None]
    finder = _StandInFinder(missing)
    sys.meta_path.append(finder)
    try:
        import compressai.models
        import compressai.utils.eval_model.__main__ as eval_model
    finally:
        sys.meta_path.remove(finder)
    return types.SimpleNamespace(models=compressai.models, eval_model=eval_model)

"""Names a package hands on without importing their modules until first use (so that importing
``nova`` stays cheap), and the old flat module paths that still import, with a warning."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Callable, Dict, List, Tuple


def lazy_exports(package: str, exports: Dict[str, Tuple[str, ...]]) -> Tuple[Callable[[str], object], List[str]]:
    """A module ``__getattr__`` for ``package`` and its ``__all__``: ``exports[module]`` names
    attributes of ``module`` (relative to the package), imported when a name is first asked for."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in home:
            return getattr(importlib.import_module(f".{home[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(home)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import nova.plan`` and the like (the engine's modules before they moved into packages):
    the module at its new path, under the old name too, with a DeprecationWarning naming it."""

    def __init__(self, package: str, moved: Dict[str, str]):
        self.package = package
        self.moved = {f"{package}.{old}": f"{package}.{new}" for old, new in moved.items()}

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.moved:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = self.moved[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there (the old path goes in 0.3).",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the module at its new path is already executed

    @classmethod
    def install(cls, package: str, moved: Dict[str, str]) -> None:
        if not any(isinstance(f, cls) and f.package == package for f in sys.meta_path):
            sys.meta_path.append(cls(package, moved))

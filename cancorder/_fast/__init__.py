"""The hot path: packing, decoding, SLCAN parsing and broadcasting.

Each module here is plain Python with a ``.pxd`` beside it; setup.py compiles it with Cython when
it can, and the compiled extension then wins on import. ``CANCORDER_PURE=1`` forces the
pure-Python twins. This package imports nothing else of cancorder. Always import them as ``from cancorder._fast import wire`` (an attribute of
this package), so the choice made here holds everywhere.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

MODULES = ("wire", "broadcast", "slcan", "socketcand", "logfile", "socketcan", "traffic", "pcap",
           "gvret", "idcount", "pump")
_HERE = os.path.dirname(os.path.abspath(__file__))


def is_compiled(module):
    return (getattr(module, "__file__", None) or "").endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES))


class CoreUnavailableError(ImportError):
    """The core asked for is not in this build (re-exported by cancorder.errors)."""

    exit_code = 2


def _load_pure(name):
    """Load ``name``.py itself, under its own module name, even where a compiled one exists.

    While it runs, the pure twins loaded before it stand under the real module names, so that
    ``from .wire import ...`` in a pure twin gets the pure wire, not the compiled one.
    """
    qualified = f"{__name__}._pure_{name}"
    module = sys.modules.get(qualified)
    if module is not None:
        return module
    path = os.path.join(_HERE, name + ".py")
    if not os.path.exists(path):
        raise CoreUnavailableError(f"the pure-Python twin of {name} is not part of this build")
    loader = importlib.machinery.SourceFileLoader(qualified, path)
    spec = importlib.util.spec_from_loader(qualified, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    swapped = {}
    for dep in MODULES[:MODULES.index(name)]:
        twin = sys.modules.get(f"{__name__}._pure_{dep}")
        if twin is not None:
            swapped[dep] = sys.modules.get(f"{__name__}.{dep}")
            sys.modules[f"{__name__}.{dep}"] = twin
    try:
        loader.exec_module(module)
    finally:
        for dep, real in swapped.items():
            if real is None:
                sys.modules.pop(f"{__name__}.{dep}", None)
            else:
                sys.modules[f"{__name__}.{dep}"] = real
    return module


def _load_compiled(name):
    package = sys.modules[__name__]
    chosen = package.__dict__.get(name)
    module = importlib.import_module(f"{__name__}.{name}")
    if chosen is not None:
        setattr(package, name, chosen)  # importing a submodule rebinds the attribute: undo
    if not is_compiled(module):
        raise CoreUnavailableError(f"{__name__}.{name} is not compiled (run: make dev)")
    return module


def variant(kind):
    """The modules of one variant, "compiled" or "pure", as a namespace (the tests use both)."""
    load = _load_compiled if kind == "compiled" else _load_pure
    return types.SimpleNamespace(kind=kind, **{name: load(name) for name in _present()})


def _present():
    """The hot modules this install has (source checkouts have every .py; executables not)."""
    names = []
    for name in MODULES:
        if os.path.exists(os.path.join(_HERE, name + ".py")) or \
                importlib.util.find_spec(f"{__name__}.{name}") is not None:
            names.append(name)
    return names


PURE_REQUESTED = os.environ.get("CANCORDER_PURE", "") not in ("", "0")

for _name in _present():
    if PURE_REQUESTED:
        try:
            _pure = _load_pure(_name)
        except ImportError:
            # the standalone executable carries the compiled modules only
            raise CoreUnavailableError("CANCORDER_PURE=1 asks for the pure-Python core, but this build "
                             "has only the compiled one: unset CANCORDER_PURE (the pure core "
                             "comes with a Python install of cancorder)") from None
        # Also under the real name, so `import cancorder._fast.wire` anywhere gets the twin.
        globals()[_name] = sys.modules[f"{__name__}.{_name}"] = _pure
    else:
        globals()[_name] = importlib.import_module(f"{__name__}.{_name}")
del _name

IMPLEMENTATION = "compiled" if all(
    is_compiled(globals()[name]) for name in _present()) else "pure"

"""Imports the checkout's ``benchmarks`` package for ``houseparty bench``.

The benchmarks are no part of the installed product: they live in the ``benchmarks/`` folder
of a checkout, beside the ``houseparty`` package, with their Erlang driver. An editable
install (``pip install -e .``) imports ``houseparty`` from the checkout, so the folder is
found next to it; an installed wheel has no such folder. The package is imported from that
folder by path, so that no other top-level ``benchmarks`` on ``sys.path`` can stand in for it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import houseparty

__all__ = ["load_benchmarks"]

NAME = "benchmarks"
DRIVER = "hp_bench_driver.erl"


def load_benchmarks() -> None:
    """Makes ``import benchmarks`` (and its submodules) the package beside ``houseparty/``.

    Raises ImportError, with a one-line message for the user, when the folder is not there
    or another module named ``benchmarks`` is imported already."""
    product = Path(houseparty.__file__).resolve().parent
    folder = product.parent / NAME
    init = folder / "__init__.py"
    if not (init.is_file() and (folder / DRIVER).is_file()):
        raise ImportError(
            f"houseparty bench runs from a checkout (pip install -e .): there is no {NAME}/ "
            f"package with {DRIVER} beside {product}"
        )
    loaded = sys.modules.get(NAME)
    if loaded is not None:
        if loaded.__file__ is not None and Path(loaded.__file__).resolve() == init.resolve():
            return
        raise ImportError(f"another module named {NAME} is imported already: {loaded!r}")
    spec = importlib.util.spec_from_file_location(
        NAME, init, submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise

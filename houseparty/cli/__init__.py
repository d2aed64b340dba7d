"""The ``houseparty`` command and the operations tools it drives: the local cluster runner,
the demo and the Kubernetes inspection (the product itself is the ``houseparty`` package)."""

from houseparty.cli._main import main

__all__ = ["main"]

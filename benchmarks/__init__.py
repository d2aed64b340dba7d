"""The benchmarks of ``houseparty bench``, with their Erlang driver ``hp_bench_driver.erl``.

They live in the checkout, not in the installed ``houseparty`` package: the command imports
this package from the folder beside ``houseparty/`` (see :mod:`houseparty.cli._benchmarks`).
``_harness`` starts the benchmark clusters, ``_cases`` measures (``_kill``: a pod
killed, with and without replicas), ``_report`` runs and prints,
``_plot`` draws. ``echo_bench.py``, ``codec_bench.py`` and ``registry_bench.escript`` are
scripts of their own, run from the checkout's root.
"""

__all__: list[str] = []

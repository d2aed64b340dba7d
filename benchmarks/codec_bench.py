"""Encode / decode rate of py_nodes' codec for gen_server call frames, next to Erlang's own.

    .venv/bin/python benchmarks/codec_bench.py [seconds-per-measure]

Measures, for a typical gen_server call term and its reply, ops/s of ``encode`` and ``decode``
in this Python (the C codec when it is built, and the pure-Python reference codec), and of
``term_to_binary`` / ``binary_to_term`` in ``erl -noshell`` (if ``erl`` is on PATH) on the very
same bytes, and prints them side by side.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from py_nodes._codec import ACCELERATED, decode, decode_prefix, encode, pure_decode, pure_encode
from py_nodes._terms import Atom, Pid, Reference

NODE = Atom("py@localhost")
ME = Pid(Atom("erl@localhost"), 93, 0, 1700000000)
REF = Reference(Atom("erl@localhost"), 1700000000, (178_443, 3_290_759_169, 2_051_014_657))
CALL = (Atom("$gen_call"), (ME, REF), (Atom("echo"), b"hello", 42))
REPLY = (REF, (Atom("ok"), b"hello", 42))
CONTROL = (22, ME, Pid(NODE, 12, 0, 3))  # SEND_SENDER
CASES: dict[str, Any] = {"call": CALL, "reply": REPLY, "control": CONTROL}


def rate(fn: Callable[[], Any], seconds: float) -> float:
    n = 0
    batch = 1000
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


ERL_BENCH = r"""
-module(codec_bench_erl).
-export([run/2]).

run(Cases, Ms) ->
    lists:foreach(fun({Name, Bin}) ->
        T = binary_to_term(Bin),
        Enc = rate(fun() -> term_to_binary(T) end, Ms),
        Dec = rate(fun() -> binary_to_term(Bin) end, Ms),
        io:format("~s ~f ~f~n", [Name, Enc, Dec])
    end, Cases).

rate(F, Ms) ->
    T0 = erlang:monotonic_time(microsecond),
    loop(F, T0, Ms * 1000, 0).

loop(F, T0, Budget, N) ->
    times(F, 1000),
    Dt = erlang:monotonic_time(microsecond) - T0,
    if Dt >= Budget -> (N + 1000) * 1000000 / Dt;
       true -> loop(F, T0, Budget, N + 1000)
    end.

times(_, 0) -> ok;
times(F, K) -> _ = F(), times(F, K - 1).
"""


def erlang_rates(bins: dict[str, bytes], seconds: float) -> dict[str, tuple[float, float]]:
    """term_to_binary / binary_to_term ops/s, from a compiled module (not erl_eval)."""
    erl = shutil.which("erl")
    erlc = shutil.which("erlc")
    if erl is None or erlc is None:
        return {}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "codec_bench_erl.erl"
        src.write_text(ERL_BENCH)
        subprocess.run([erlc, "-o", d, str(src)], check=True, timeout=120)
        cases = ", ".join(f'{{"{k}", <<{",".join(str(b) for b in v)}>>}}' for k, v in bins.items())
        script = f"codec_bench_erl:run([{cases}], {int(seconds * 1000)}), halt()."
        out = subprocess.run(
            [erl, "-noshell", "-pa", d, "-eval", script],
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
    res = {}
    for line in out.splitlines():
        name, enc, dec = line.split()
        res[name] = (float(enc), float(dec))
    return res


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    bins = {name: encode(t) for name, t in CASES.items()}
    frame = b"p" + bins["control"] + bins["call"]
    erl = erlang_rates(bins, seconds)
    print(
        f"{'term':<9}{'bytes':>6}{'encode/s':>11}{'decode/s':>11}{'pure enc/s':>11}"
        f"{'pure dec/s':>11}{'erl t2b/s':>11}{'erl b2t/s':>11}{'enc ratio':>10}{'dec ratio':>10}"
    )
    for name, t in CASES.items():
        b = bins[name]
        enc = rate(lambda t=t: encode(t), seconds)
        dec = rate(lambda b=b: decode(b), seconds)
        p_enc = rate(lambda t=t: pure_encode(t), seconds)
        p_dec = rate(lambda b=b: pure_decode(b), seconds)
        e_enc, e_dec = erl.get(name, (float("nan"), float("nan")))
        print(
            f"{name:<9}{len(b):>6}{enc:>11,.0f}{dec:>11,.0f}{p_enc:>11,.0f}{p_dec:>11,.0f}"
            f"{e_enc:>11,.0f}{e_dec:>11,.0f}{enc / e_enc:>10.3f}{dec / e_dec:>10.3f}"
        )

    def split_frame() -> None:
        _, off = decode_prefix(frame, 1)
        decode_prefix(frame, off)

    print(
        f"\nframe 112+control+call ({len(frame)} bytes): "
        f"{rate(split_frame, seconds):,.0f} decode_prefix pairs/s"
    )
    assert decode(bins["call"]) == CALL
    print(
        f"python {sys.version.split()[0]}; C codec: {'yes' if ACCELERATED else 'not built'};"
        f" erl: {'yes' if erl else 'not found'}; ratios are Python (encode/s, decode/s) /"
        " Erlang, both single-threaded on this machine"
    )


if __name__ == "__main__":
    main()

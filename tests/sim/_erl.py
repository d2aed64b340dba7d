"""Erlang nodes for simulated pods: command lines, and an erl node driven over stdin.

:class:`ErlShell` wraps an ``erl -noshell`` process whose ``-eval`` loop reads one Erlang
expression per line on stdin and answers one line on stdout: ``#HP# ok <term>`` with the
value printed by ``~w``, or ``#HP# error <class>:<reason>``. Other output on stdout (the
logger's reports, io:format in an expression) lacks the marker and is kept apart. The
node halts at end of input, so a node whose driver died goes away by itself.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time

from tests.sim._netns import PodProcess

__all__ = ["ErlError", "ErlShell", "erl_argv"]

_MARK = "#HP# "

# One expression per line in, one line out. The named fun keeps it a single -eval.
_LOOP = r"""
Loop = fun Loop() ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(1);
        Line ->
            Reply = try
                {ok, Tokens, _} = erl_scan:string(Line),
                {ok, Exprs} = erl_parse:parse_exprs(Tokens),
                {value, Value, _} = erl_eval:exprs(Exprs, []),
                io_lib:format("ok ~w", [Value])
            catch Class:Reason -> io_lib:format("error ~w:~w", [Class, Reason])
            end,
            io:put_chars(["#HP# ", Reply, $\n]),
            Loop()
    end
end,
Loop().
"""


def erl_argv(
    name: str,
    cookie: str,
    *,
    listen_ip: str | None = None,
    dist_port: int | None = None,
    net_ticktime: int | None = None,
    shell: bool = False,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """``erl -name NAME -setcookie COOKIE -noshell`` with optional pinning.

    ``listen_ip`` binds distribution to one address (needed in the root namespace, where
    it must be the bridge address); ``dist_port`` pins the port; ``net_ticktime`` must be
    the same on every node that talks together. With ``shell`` the node runs the
    :class:`ErlShell` loop.
    """
    argv = ["erl", "-name", name, "-setcookie", cookie, "-noshell"]
    if listen_ip is not None:
        argv += ["-kernel", "inet_dist_use_interface", "{" + listen_ip.replace(".", ",") + "}"]
    if dist_port is not None:
        argv += [
            "-kernel",
            "inet_dist_listen_min",
            str(dist_port),
            "-kernel",
            "inet_dist_listen_max",
            str(dist_port),
        ]
    if net_ticktime is not None:
        argv += ["-kernel", "net_ticktime", str(net_ticktime)]
    argv += list(extra)
    if shell:
        argv += ["-eval", _LOOP]
    return argv


class ErlError(RuntimeError):
    """An expression sent to an :class:`ErlShell` raised, or the node went away."""


class ErlShell:
    """Drive a node started with ``erl_argv(..., shell=True)`` and ``pipe=True``."""

    def __init__(self, proc: PodProcess) -> None:
        if proc.popen.stdin is None or proc.popen.stdout is None:
            raise ValueError("start the node with pipe=True")
        self.proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.other_output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.popen.stdout
        assert stdout is not None
        try:
            for line in stdout:
                if line.startswith(_MARK):
                    self._lines.put(line[len(_MARK) :].rstrip("\n"))
                else:
                    self.other_output.append(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def eval(self, expr: str, timeout: float = 30.0) -> str:
        """Evaluate one expression (no trailing '.') and return its value as ``~w``."""
        if "\n" in expr:
            raise ValueError("one line per expression")
        stdin = self.proc.popen.stdin
        assert stdin is not None
        try:
            stdin.write(expr + ".\n")
            stdin.flush()
        except (OSError, ValueError) as e:
            raise ErlError(f"node is gone: {self.proc.output()[-2000:]}") from e
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ErlError(f"no answer to {expr!r} within {timeout} s") from None
        if line is None:
            raise ErlError(f"node exited: {self.proc.output()[-2000:]}")
        kind, _, value = line.partition(" ")
        if kind != "ok":
            raise ErlError(f"{expr}: {value}")
        return value

    def wait_started(self, timeout: float = 30.0) -> str:
        """Wait for the node to answer; returns its node name."""
        return self.eval("node()", timeout).strip("'")

    def ping(self, node: str, timeout: float = 60.0) -> str:
        """``net_adm:ping(Node)``: 'pong' or 'pang'."""
        return self.eval(f"net_adm:ping('{node}')", timeout)

    def ping_until(self, node: str, want: str, within: float) -> float:
        """Ping until the answer is ``want``; returns the seconds it took."""
        start = time.monotonic()
        while True:
            left = within - (time.monotonic() - start)
            if left <= 0:
                raise ErlError(f"{node} did not answer {want} within {within} s")
            if self.ping(node, timeout=max(left, 1.0)) == want:
                return time.monotonic() - start
            time.sleep(0.1)

    def close(self) -> None:
        """End of input: the node halts."""
        stdin = self.proc.popen.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()

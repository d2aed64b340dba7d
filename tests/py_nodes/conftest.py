"""Helpers for the distribution tests: real ``erl`` nodes driven over stdin/stdout.

:class:`ErlNode` starts ``erl -name t_<random>@127.0.0.1`` running a small control loop:
each stdin line is an Erlang expression sequence, evaluated with bindings kept between
lines; the answer comes back as ``@@R <base64 of term_to_binary({ok, V} | {C, E})>``
and is decoded with our codec. Bindings persist between lines (and inside funs a
bound name is a pattern to match, not a fresh variable), so give each line's variables
unique names. ``await erl.eval(...)`` runs the blocking read in a
thread, so the test's event loop (and the Python node on it) keeps serving while
Erlang calls into it.

``async def`` tests run in a fresh event loop each (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from py_nodes import Node
from py_nodes._codec import decode
from py_nodes._terms import Atom

ERL = shutil.which("erl")
REPO = Path(__file__).resolve().parents[2]

_LOOP = r"""
Eval = fun Eval(B) ->
  case io:get_line("") of
    eof -> halt(0);
    Line ->
      {R, B2} = try
          {ok, Toks, _} = erl_scan:string(Line),
          {ok, Exprs} = erl_parse:parse_exprs(Toks),
          {value, V, NB} = erl_eval:exprs(Exprs, B),
          {{ok, V}, NB}
        catch C:E -> {{C, E}, B} end,
      io:put_chars(["@@R ", base64:encode(term_to_binary(R)), "\n"]),
      Eval(B2)
  end
end,
Eval(erl_eval:new_bindings()).
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}@127.0.0.1"


class ErlError(Exception):
    """The expression raised in Erlang: ``.cls`` and ``.reason`` are the terms."""

    def __init__(self, cls: Any, reason: Any) -> None:
        super().__init__(f"{cls}: {reason!r}")
        self.cls = cls
        self.reason = reason


class ErlNode:
    """A real ``erl`` node evaluating expressions sent by the test."""

    def __init__(
        self,
        cookie: str,
        name: str | None = None,
        extra: tuple[str, ...] = (),
        erl: str | None = None,
    ) -> None:
        """``erl`` is the command of another Erlang than ``erl`` on PATH (a newer OTP)."""
        command = erl or ERL
        assert command is not None
        self.name = name or unique("t")
        self.atom = Atom(self.name)
        self.proc = subprocess.Popen(
            [
                command,
                "-name",
                self.name,
                "-setcookie",
                cookie,
                "-noshell",
                *extra,
                "-eval",
                _LOOP.replace("\n", " "),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lock = threading.Lock()
        self.output: list[str] = []

    def eval_sync(self, expr: str, timeout: float = 30.0) -> Any:
        line = " ".join(expr.split()).rstrip(".") + ".\n"
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
            while True:
                raw = self.proc.stdout.readline()
                if not raw:
                    raise RuntimeError(f"erl {self.name} exited: {''.join(self.output)[-2000:]}")
                text = raw.decode(errors="replace")
                if text.startswith("@@R "):
                    break
                self.output.append(text)
        result = decode(base64.b64decode(text[4:]))
        if result[0] == Atom("ok"):
            return result[1]
        raise ErlError(result[0], result[1])

    async def eval(self, expr: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expr`` (an Erlang expression sequence) and return its value."""
        return await asyncio.wait_for(asyncio.to_thread(self.eval_sync, expr), timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def cookie() -> str:
    return "c_" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def erl(cookie: str) -> Iterator[ErlNode]:
    if ERL is None:
        pytest.skip("erl is not on PATH")
    node = ErlNode(cookie)
    node.eval_sync("ok")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def erl_factory(cookie: str) -> Iterator[Callable[..., ErlNode]]:
    nodes: list[ErlNode] = []

    def make(*extra: str, node_cookie: str | None = None) -> ErlNode:
        node = ErlNode(node_cookie or cookie, extra=extra)
        node.eval_sync("ok")
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()


@asynccontextmanager
async def running_node(cookie: str, **kwargs: Any) -> AsyncIterator[Node]:
    node = Node(unique("py"), cookie, **kwargs)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def start_echo_process(name: str, cookie: str) -> subprocess.Popen[bytes]:
    """``python -m py_nodes.echo`` in its own OS process (ready when it prints)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "py_nodes.echo", "--name", name, "--cookie", cookie],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    seen = ""
    while "listening" not in seen:  # log lines (a plain node's warning) may come first
        line = proc.stdout.readline().decode()
        assert line, seen
        seen += line
    return proc


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), 120))
        return True
    return None

"""The README's iex and Python sessions run as written, with the outputs it shows."""

from __future__ import annotations

import re
from pathlib import Path

from tests.houseparty.conftest import Cluster, Iex

README = Path(__file__).resolve().parents[2] / "README.md"
TIMESTAMP = re.compile(r"~U\[[^\]]+\]")


def layout_free(text: str) -> str:
    return "".join(TIMESTAMP.sub("~U[...]", text).split())


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def iex_session() -> list[tuple[str, str]]:
    """(line typed, output shown) pairs of the README's iex session."""
    block = next(b for b in fenced_blocks("elixir") if "iex> HouseParty.get_person_room_log" in b)
    pairs: list[tuple[str, str]] = []
    for chunk in block.split("iex> ")[1:]:
        line, _, output = chunk.partition("\n")
        pairs.append((line.strip(), output.strip()))
    return pairs


def test_readme_iex_session(cluster: Cluster) -> None:
    session = iex_session()
    assert len(session) >= 8
    iex = Iex(cluster.cookie, cluster.sidecars[0])
    try:
        for line, shown in session:
            got = iex.run(line)
            # iex breaks a long result over lines: compare without layout.
            assert layout_free(got) == layout_free(shown), line
    finally:
        iex.close()


def test_readme_python_session(cluster: Cluster) -> None:
    block = next(b for b in fenced_blocks("python") if "HouseParty(" in b)
    code = block.replace('"sidecar1@127.0.0.1"', repr(cluster.sidecars[0])).replace(
        '"COOKIE"', repr(cluster.cookie)
    )
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    with cluster.client() as hp:
        assert hp.dump() == {
            "den": sorted(f"peep_{i}" for i in range(10)),
            "kitchen": ["bilal"],
            "living_room": ["kid", "play", "sidney"],
        }
        assert hp.where_is("peep_10") is None

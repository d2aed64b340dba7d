"""The command lines of running processes, as anyone who lists them (``ps``) sees them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["command_lines"]


def command_lines(sessions: set[int]) -> dict[int, str]:
    """By pid, the command line of every process of ``sessions`` (its children included)
    and of every epmd."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # The session is the 6th field of stat, the 4th after the command's ")".
            session = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])
            comm = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if session in sessions or comm == "epmd":
            found[int(proc.name)] = argv
    return found

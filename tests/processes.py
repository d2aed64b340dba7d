"""The command lines of running processes, as anyone who lists them (``ps``) sees them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["command_lines"]


def command_lines(sessions: set[int]) -> dict[int, str]:
    """By pid, the command line of every process of ``sessions``, of their descendants
    (the VMs' helpers, erl_child_setup and inet_gethost, start sessions of their own) and
    of every epmd."""
    parents: dict[int, int] = {}
    argvs: dict[int, str] = {}
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # After the command's ")": state, ppid, pgrp, session.
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        pid = int(proc.name)
        parents[pid] = int(fields[1])
        argvs[pid] = argv
        if int(fields[3]) in sessions or comm == "epmd":
            found.add(pid)
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grown = bool(children)
    return {pid: argvs[pid] for pid in found}

"""The ``houseparty`` command line."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
@click.version_option(package_name="houseparty")
def main() -> None:
    """Rooms and people as Python GenServers spread over an Erlang cluster."""

"""``python -m houseparty.cli``: the ``houseparty`` command."""

from houseparty.cli import main

main()

"""``python -m workers`` is ``mailops``."""

from __future__ import annotations

from workers.cli.main import main

main()

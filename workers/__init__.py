"""mailops workers: Redis-fed Dramatiq actors that change mail accounts on hosting panels."""

from __future__ import annotations

__version__ = "0.1.0"

"""The clock pass of scripts/test really runs ahead: Python's wall clock and Redis's agree, the kernel's does not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

SHIFT_S = int(os.environ.get("TEST_CLOCK_SHIFT_DAYS", "0")) * 86_400


def test_python_and_redis_share_one_wall_clock_shifted_from_the_kernels_by_the_pass_shift(
        tmp_path: Path, redis_client: redis.Redis) -> None:
    # Given a file just written (its mtime is the kernel's real clock) and Redis's TIME
    marker = tmp_path / "now"
    marker.write_text("")
    seconds, _micro = redis_client.time()
    # Then Python's clock and Redis's are the shifted clock, within a few seconds of each other
    assert abs(time.time() - marker.stat().st_mtime - SHIFT_S) < 5
    assert abs(time.time() - seconds) < 5

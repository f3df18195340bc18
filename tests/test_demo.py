"""The README's first command: ``mailops demo`` prints the events of every backend kind and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_demo_prints_every_commands_terminal_event_on_all_three_backend_kinds_and_exits_0() -> None:
    # Given a shell with no Redis configured (the demo starts its own)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILOPS_")}
    # When the demo runs through the real entry point
    done = subprocess.run([sys.executable, "-m", "workers", "demo"], env=env, capture_output=True, text=True,
                          timeout=120)
    # Then it exits 0 after every command got its terminal event
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "every command has its terminal event" in out
    # And it ran on WHM, cPanel and BrainyCP, showing successes, a duplicate, a panel refusal and rejections
    for backend in ("whm1", "cp1", "brainy1"):
        assert f"on {backend}" in out
    for status in ("succeeded", "duplicate", "failed", "rejected"):
        assert status in out
    assert "SIGNATURES DISABLED" not in done.stderr

"""``mailops sandbox`` through its real entry point: three panels answer, change state, and stop on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx


def test_mailops_sandbox_serves_all_three_panels_until_sigterm() -> None:
    # Given the sandbox started as an operator would, on free ports
    process = subprocess.Popen(
        [sys.executable, "-m", "workers", "sandbox", "--whm-port", "0", "--cpanel-port", "0", "--brainycp-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        urls = {line.split()[0]: re.search(r"http://\S+", line).group(0) for line in lines[1:]}  # type: ignore[union-attr]
        # When a producer's integration test suspends an account on the WHM sandbox
        whm = httpx.post(f"{urls['WHM']}/json-api/suspend_outgoing_email",
                         data={"api.version": "1", "user": "example"},
                         headers={"Authorization": "whm root:sandbox-whm-token"}, timeout=10)
        # Then it answers with WHM's envelope and the ledger shows the change
        assert whm.json()["metadata"]["result"] == 1
        ledger = httpx.get(f"{urls['WHM']}/__sandbox__/ledger", timeout=10).json()
        assert [(c["target"], c["field"], c["new"]) for c in ledger] == [("example", "outgoing", "suspended")]
        # And the cPanel and BrainyCP sandboxes answer too (refusing bad credentials as the real ones do)
        assert httpx.get(f"{urls['cPanel']}/execute/Email/suspend_login?email=a@example.example",
                         headers={"Authorization": "cpanel example:wrong"}, timeout=10).status_code in (401, 403)
        brainy = httpx.post(urls["BrainyCP"], data={"Login": "admin", "pass": "wrong"}, timeout=10).json()
        assert brainy == {"code": 1, "message": "Not perm2"}
    finally:
        # When the operator stops it, Then it exits 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0

"""The bench's sandbox panels, served from their own process so they never share a GIL with the
measurer or a worker.

``python -m workers.bench.sandbox_proc --backends 2 --token T --users 16`` prints one JSON line
(``{"urls": [...]}``) once every server listens, then serves until SIGTERM or stdin closes.
Faults and statistics go through each server's ``/__sandbox__/`` control endpoints.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading

from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.stop_signal import stop_on_signals, wait_for_stop


def bench_users(count: int) -> list[str]:
    """The cPanel accounts every bench sandbox holds (commands pick among them)."""
    return [f"user{i}" for i in range(count)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.sandbox_proc")
    parser.add_argument("--backends", type=int, default=1)
    parser.add_argument("--token", default="bench-whm-token")
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args(argv)
    servers = []
    for index in range(args.backends):
        app = WhmSandbox(token=args.token, name=f"whm{index + 1}")
        for user in bench_users(args.users):
            app.add_account(user)
        server = SandboxServer(app).start()
        servers.append(server)
    # The accounts live as long as the process: keep them out of the garbage collector's full
    # passes (one over 50,000 accounts paused every answer for ~44 ms, measured mid-run).
    gc.freeze()
    stop = stop_on_signals()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"urls": [s.url for s in servers]}), flush=True)
    wait_for_stop(stop)
    for server in servers:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()

"""The backends' own ceiling under the caps: what a client with no queue and no Redis gets.

``python -m workers.bench.ceiling --sandbox URL [--sandbox URL ...] --per-backend N --token T
--seconds S`` runs N threads per sandbox, each making the floor's call back to back on mailops'
own keep-alive pool (:func:`workers.bench.baseline.pool_call`, the cheaper of the two clients), and prints the calls per second
completed after a short warm-up as JSON. With N equal to each backend's cap this is the most any
client can get from those backends under those caps: the nominal ``caps / latency`` leaves out
the time each call spends in HTTP and in the sandbox itself.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import orjson

from workers.bench.baseline import pool_call
from workers.bench.sandbox_proc import bench_users

#: Seconds of calls before counting starts (connections opened, threads running).
WARM_UP_S = 0.5


def measure(sandboxes: list[str], *, per_backend: int, token: str, seconds: float, users: int) -> float:
    """Calls per second completed by ``per_backend`` threads on each sandbox over ``seconds``."""
    names = bench_users(users)
    counted = [0]
    lock = threading.Lock()
    start = time.monotonic() + WARM_UP_S
    end = start + seconds

    def run(url: str, offset: int) -> None:
        panel_call = pool_call(url, token, 1)
        i = offset
        while True:
            panel_call(names[i % len(names)])
            done = time.monotonic()
            if done > end:
                break
            if done >= start:
                with lock:
                    counted[0] += 1
            i += per_backend * len(sandboxes)

    threads = [threading.Thread(target=run, args=(url, k * len(sandboxes) + b))
               for b, url in enumerate(sandboxes) for k in range(per_backend)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counted[0] / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.ceiling")
    parser.add_argument("--sandbox", action="append", required=True)
    parser.add_argument("--per-backend", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=25_000)
    args = parser.parse_args(argv)
    cps = measure(args.sandbox, per_backend=args.per_backend, token=args.token, seconds=args.seconds, users=args.users)
    sys.stdout.write(orjson.dumps({"cps": round(cps, 1)}).decode() + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()

"""How much of two cores this machine gives right now: two processes spin for a few seconds and
their CPU time is summed (2.0 on an idle two-core machine; less when a shared host is busy).

    python bench/cores_available.py [--seconds 3]

Run it before and after a benchmark whose work is meant to use the second core: its wall times
mean little when the answer is well below 2.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    started = time.monotonic()
    pid = os.fork()
    spin(a.seconds)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    wall = time.monotonic() - started
    own, child = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + child.ru_utime + child.ru_stime
    print(f"{cpu / wall:.2f} cores ({cpu:.2f} s of CPU in {wall:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every benchmark and print one table (Markdown).

    python -m benchmarks            # the full run (about 40 minutes on 2 cores)
    python -m benchmarks --quick    # a shorter run (about 8 minutes)
    python -m benchmarks --only B1,B3
    python -m benchmarks --only B7,B8 --duration 60   # steady operation, shortened

B3, B4 and B7 need Debian's prometheus-blackbox-exporter on the PATH. B7
and B8 run minutes of steady operation each (--duration, 300 s by default;
B7 first lets every target's history fill, about 12.5 minutes): the full
run spends most of its time there.

Ratios are what to read: each comes from measurements taken in the same run,
interleaved where possible, so load from other processes hits both sides.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import cost, fanout, fidelity, memory, scale, scrape, scrape_memory, steady
from .common import Report, machine

BENCHMARKS = {
    "B1": ("scrape cost against prometheus_client's floor", scrape.run),
    "B2": ("fan-out over slow targets and concurrent /probe", fanout.run),
    "B3": ("fidelity of the reported canary round trip", fidelity.run),
    "B4": ("CPU, memory and threads beside blackbox_exporter", cost.run),
    "B5": ("where the memory goes at 1000 targets", memory.run),
    "B6": ("the memory a scrape adds, streamed and whole", scrape_memory.run),
    "B7": ("steady operation: 1000 targets scraped every 15 s", steady.run),
    "B8": ("one process at 5000 targets against 1000", scale.run),
}
# Benchmarks of steady operation, whose length --duration sets.
TIMED = {"B7", "B8"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and targets")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated benchmarks to run ({','.join(BENCHMARKS)}; default all)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how long {', '.join(sorted(TIMED))} operate (default 300, 90 with --quick)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)}; choose among {', '.join(BENCHMARKS)}"
        )
    report = Report()
    info = machine()
    began = time.monotonic()
    for name, (title, run) in BENCHMARKS.items():
        if chosen and name not in chosen:
            continue
        print(f"{name}: {title} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        options = {"duration": args.duration} if name in TIMED else {}
        run(report, args.quick, **options)
        print(f"{name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    if chosen:
        command += f" --only {','.join(chosen)}"
    if args.duration is not None:
        command += f" --duration {args.duration:g}"
    print(f"Command: `{command}` ({time.monotonic() - began:.0f} s)")
    print("Machine: " + "; ".join(f"{key} {value}" for key, value in info.items()))
    print()
    print(report.markdown())
    for note in report.notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

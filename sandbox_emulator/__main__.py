"""`python -m sandbox_emulator`: run a stand-in sandbox server until interrupted.

The first line on stdout is the base URL (useful with `--port 0`). Faults can
be changed while it runs through the emulator-only control endpoint:

    curl -X POST -d '{"endpoint": "execute", "status": 500}' http://127.0.0.1:8000/_emulator/faults/
    curl -X DELETE http://127.0.0.1:8000/_emulator/faults/
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .faults import parse_fault_spec
from .routing import CONTROL_PATH
from .server import Emulator


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _fault(text: str):
    try:
        return parse_fault_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox_emulator",
        description=(
            "Stand-in PremierLangage/WIMS sandbox server (2.x or 3.x API). Commands run for "
            "real with bash as the current user, so it listens on loopback only unless "
            "--allow-remote is given."
        ),
        epilog=(
            f"Emulator-only control endpoint: POST {CONTROL_PATH} with a JSON fault such as "
            '{"endpoint": "execute", "status": 500}; DELETE it to clear faults '
            "(?endpoint=NAME for one); GET it to list them."
        ),
    )
    parser.add_argument("--api", type=int, choices=(2, 3), default=3, help="generation (3)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any free one (8000)")
    parser.add_argument("--containers", type=int, default=5, help="pool size (5)")
    parser.add_argument("--usage-delay", type=_seconds, default=2.0, help="/usages/ time (2)")
    parser.add_argument(
        "--libraries-delay", type=_seconds, default=1.0, help="/libraries/ time (1)"
    )
    parser.add_argument(
        "--overload-wait", type=_seconds, default=2.0, help="wait for a container before 503 (2)"
    )
    parser.add_argument(
        "--execute-timeout", type=_seconds, default=10.0, help="bound on one execute (10)"
    )
    parser.add_argument(
        "--restart-delay", type=_seconds, default=0.0, help="container restart time (0)"
    )
    parser.add_argument(
        "--expiration", type=_seconds, default=86400.0, help="saved environment lifetime (86400)"
    )
    parser.add_argument("--libraries", metavar="FILE", help="JSON document for /libraries/")
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="ENDPOINT:KEY=VALUE[,KEY=VALUE...]",
        help=(
            "inject a fault (repeatable); ENDPOINT is specifications, usages, libraries, "
            "execute, environments, files or '*'; KEY is latency, status, drop, drip, "
            "content_type, truncate, head_body or body (body= must come last)"
        ),
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (anyone reaching it can run commands as you)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (debug: one line per request)",
    )
    return parser


def _read_libraries(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except OSError as error:
        raise ValueError(f"--libraries {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--libraries {path}: not valid JSON: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        libraries = _read_libraries(args.libraries) if args.libraries else None
        emulator = Emulator(
            api=args.api,
            containers=args.containers,
            host=args.host,
            port=args.port,
            usage_delay=args.usage_delay,
            libraries_delay=args.libraries_delay,
            overload_wait=args.overload_wait,
            execute_timeout=args.execute_timeout,
            restart_delay=args.restart_delay,
            libraries=libraries,
            faults=dict(args.fault),
            allow_remote=args.allow_remote,
            expiration=args.expiration,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    try:
        emulator.start()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    finished = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())
    print(emulator.url, flush=True)
    try:
        while not finished.wait(1.0):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

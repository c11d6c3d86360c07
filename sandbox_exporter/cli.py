"""Command line: the daemon, `--once`, `--demo` and `--config.check`.

Flags follow the Prometheus style (`--config.file`, `--web.listen-address`).
The modules behind them are imported once the flags are read: `--once -t`
counts from the process's start, and its watchdog is armed before the heavy
imports (see once_deadline).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .logs import LEVELS, setup_logging
from .once_deadline import DEFAULT_TIMEOUT_SECONDS, UNKNOWN_EXIT_CODE, Watchdog, process_start

# 9929 is free in Prometheus' default port allocations list (9100-9999 are
# handed out to exporters); see README "Default port".
DEFAULT_PORT = 9929
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
# The demo's sandboxes run arbitrary commands; its exporter stays on loopback
# unless told otherwise.
DEFAULT_DEMO_LISTEN_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_CONFIG_FILE = "/etc/sandbox-exporter/config.yml"

log = logging.getLogger("sandbox_exporter")


def build_parser() -> argparse.ArgumentParser:
    from .state import DEFAULT_HISTORY_LIMIT

    parser = argparse.ArgumentParser(
        prog="sandbox-exporter",
        description="Prometheus exporter for PremierLangage/WIMS code-execution sandboxes.",
    )
    parser.add_argument(
        "-c",
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG_FILE,
        help="YAML configuration file (default %(default)s)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration file, then exit 0 (valid) or 1 (invalid)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help=f"[host]:port to serve metrics and /probe on (default {DEFAULT_LISTEN_ADDRESS}; "
        f"{DEFAULT_DEMO_LISTEN_ADDRESS} with --demo)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        help="YAML file enabling TLS and/or basic auth on every endpoint, in the format of "
        "Prometheus' exporter-toolkit (tls_server_config, basic_auth_users)",
    )
    parser.add_argument(
        "--scheduler",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="probe targets on their intervals (default); with --no-scheduler, probe only "
        "on /probe requests, e.g. replicas sharing targets through hashmod",
    )
    parser.add_argument(
        "--history.limit",
        dest="history_limit",
        type=_history_limit,
        default=DEFAULT_HISTORY_LIMIT,
        help="probe results kept per target for its page (default %(default)s; 0 keeps none)",
    )
    parser.add_argument("--log.level", dest="log_level", default="info", choices=LEVELS)
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    _add_once_flags(parser)
    parser.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help="with --once: check only this target (repeatable)",
    )
    parser.add_argument(
        "--url", help="with --once: check this sandbox URL with default settings, no config file"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start built-in emulated sandboxes on loopback and export them",
    )
    parser.add_argument("--version", action="version", version=f"sandbox-exporter {__version__}")
    return parser


def _add_once_flags(parser: argparse.ArgumentParser) -> None:
    """--once and the flags its watchdog needs, read before anything heavy is imported."""
    parser.add_argument(
        "--once",
        action="store_true",
        help="probe every target once, print a report, exit 0 OK/1 WARNING/2 CRITICAL/3 UNKNOWN",
    )
    parser.add_argument(
        "--output", choices=["text", "json"], default="text", help="report format of --once"
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="with --once: report and exit within this many seconds of the process's start, "
        "whatever the sandboxes do; probes still running then are reported as timed out "
        f"(default {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def _once_watchdog(argv: Sequence[str] | None) -> Watchdog | None:
    """For --once, its watchdog, started; None otherwise or when the flags are
    wrong (the full parser then says what is wrong)."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    _add_once_flags(early)
    try:
        args, _ = early.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):
        return None
    if not args.once:
        return None
    return Watchdog(process_start(), args.timeout, args.output).start()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    # `not >` also refuses NaN.
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _history_limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, not {text!r}")
    return int(text)


def listen_address_for(args: argparse.Namespace) -> str:
    if args.listen_address is not None:
        return args.listen_address
    return DEFAULT_DEMO_LISTEN_ADDRESS if args.demo else DEFAULT_LISTEN_ADDRESS


def main(argv: Sequence[str] | None = None) -> int:
    watchdog = _once_watchdog(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # Bad arguments are UNKNOWN in the monitoring-plugin convention.
        return UNKNOWN_EXIT_CODE if exit_.code not in (0, None) else 0
    setup_logging(args.log_level, args.log_format)
    from .config import ConfigError, empty_config_note, load_config
    from .vocabulary import counted
    from .web import parse_listen_address
    from .webconfig import WebConfigError, load_web_config

    try:
        args.listen_address = listen_address_for(args)
        parse_listen_address(args.listen_address)
    except ValueError as error:
        print(f"sandbox-exporter: {error}", file=sys.stderr)
        return UNKNOWN_EXIT_CODE
    if args.demo:
        from .demo import run_demo

        return _exit_now(run_demo(args.listen_address))
    if args.once:
        return _exit_now(_once(args, watchdog))
    if args.config_check:
        try:
            config = load_config(args.config_file)
            if args.web_config_file:
                load_web_config(args.web_config_file)
        except ConfigError as error:  # WebConfigError is one too
            kind = "web config" if isinstance(error, WebConfigError) else "config"
            print(f"{kind} invalid: {error}", file=sys.stderr)
            return 1
        print(f"config valid: {counted(len(config.targets), 'target')}")
        note = empty_config_note(config)
        if note is not None:
            # Valid, yet probably not what was meant: said where warnings go.
            print(f"warning: {args.config_file}: {note}", file=sys.stderr)
        return 0
    return _exit_now(_daemon(args))


def _exit_now(code: int) -> int:
    """Leave without waiting for worker threads.

    A name lookup stuck in the resolver's thread would hold the process
    past its promised stop; nothing it could still produce is wanted.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _once(args: argparse.Namespace, watchdog: Watchdog | None) -> int:
    from .config import ConfigError, config_for_url, load_config
    from .once import render_json, render_text, run_once

    def report(text: str) -> None:
        if watchdog is not None:
            watchdog.claim()  # for good, if the watchdog has reported already
        print(text, end="")

    try:
        config = config_for_url(args.url) if args.url else load_config(args.config_file)
    except ConfigError as error:
        report(f"SANDBOX UNKNOWN - bad configuration: {error}\n")
        return UNKNOWN_EXIT_CODE
    if args.target:
        unknown = sorted(set(args.target) - {t.name for t in config.targets})
        if unknown:
            report(f"SANDBOX UNKNOWN - no such target: {', '.join(unknown)}\n")
            return UNKNOWN_EXIT_CODE
    # -t counts from our exec, as the monitoring system that started us counts.
    status, verdicts = run_once(config, args.target, args.timeout, started=process_start())
    report(render_json(verdicts) if args.output == "json" else render_text(verdicts))
    return int(status)


def _daemon(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .daemon import serve
    from .exporter import Exporter
    from .webconfig import load_web_config

    path = Path(args.config_file)
    try:
        config = load_config(path)
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 1
    exporter = Exporter(config, path, scheduled=args.scheduler)
    exporter.state.set_history_limit(args.history_limit)
    return serve(exporter, args.listen_address, web_config=web_config)


if __name__ == "__main__":
    sys.exit(main())

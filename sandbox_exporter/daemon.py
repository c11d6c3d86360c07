"""Running the exporter as a daemon: one event loop, signals, a bounded stop.

SIGTERM and SIGINT stop it, SIGHUP reloads the configuration. Stopping
closes the listener and the probes' connections within ``STOP_SECONDS``; the
process then ends whatever its clients and probes were doing, well within
the 30 s Kubernetes and the 90 s systemd allow.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import __version__
from .config import empty_config_note
from .exporter import Exporter
from .vocabulary import counted
from .web import WebServer
from .webconfig import WebConfig

log = logging.getLogger("sandbox_exporter")

STOP_SECONDS = 1.5
# The loop's worker thread: reading the configuration on a reload (one at a
# time, under the exporter's lock). Name lookups need none: they are
# asynchronous (aiodns, see transport.py).
WORKER_THREADS = 1


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one, as Go programs do; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-file limit from %d: %s", soft, error)
    return soft


async def run(
    exporter: Exporter,
    listen_address: str,
    on_started: Callable[[WebServer], None] | None = None,
    web_config: WebConfig | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until ``stop`` is set (or, in the main thread, SIGTERM/SIGINT)."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="worker")
    )
    stop = stop or asyncio.Event()
    await exporter.start()
    try:
        server = await WebServer(exporter, listen_address, web_config).start()
    except OSError as error:
        log.error("cannot listen on %s: %s", listen_address, error)
        await exporter.stop()
        return 1
    log.info(
        "sandbox-exporter %s listening on %s with %s",
        __version__,
        server.url,
        counted(len(exporter.config.targets), "target"),
    )
    if (note := empty_config_note(exporter.config)) is not None:
        log.warning("configuration: %s", note)

    def stop_on(signum: int) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    reloads: set[asyncio.Task] = set()

    def reload() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_on, signum)
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (ValueError, RuntimeError):
        pass  # not the main thread (tests): the caller sets `stop`
    if on_started is not None:
        on_started(server)
    await stop.wait()
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await server.stop()
            await exporter.stop()
    except TimeoutError:
        log.warning("stopped without waiting any longer for connections to close")
    log.info("stopped")
    return 0


def serve(
    exporter: Exporter,
    listen_address: str,
    on_started: Callable[[WebServer], None] | None = None,
    web_config: WebConfig | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the configuration.

    The caller ends the process right after: the loop's worker thread (a
    configuration file on a hanging mount can hold it) is not waited for.
    """
    log.info("open-file limit: %d", raise_open_file_limit())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(run(exporter, listen_address, on_started, web_config))

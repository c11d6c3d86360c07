"""Run the emulator with a listen backlog fit for hundreds of simultaneous probes.

The emulator's listener keeps socketserver's default backlog of 5: a burst
of connections beyond it has its SYNs dropped and retried by the kernel one
second later, which would show up as a second of latency that no real
sandbox server (gunicorn or uwsgi behind nginx, backlogs in the hundreds)
adds. Used as `python -m benchmarks.emulator_main <emulator flags>`.
"""

from __future__ import annotations

import sys

from sandbox_emulator import handler
from sandbox_emulator.__main__ import main

handler.Listener.request_queue_size = 1024

if __name__ == "__main__":
    sys.exit(main())

"""The exporter daemon with larger /probe pools, to measure what they would change.

Not a configuration anyone runs: a what-if for the B2 /probe rows. It raises
the listen backlog of the web server (socketserver's default is 5: a burst
of concurrent scrapes beyond it has SYNs dropped and retried a second later)
and the on-demand probe pool (32 threads: the 33rd concurrent /probe waits
for a free one). Used as `python -m benchmarks.exporter_variant <cli flags>`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import sys

from sandbox_exporter import exporter, web
from sandbox_exporter.cli import main

POOL = 128

web._ThreadingWSGIServer.request_queue_size = POOL
exporter.ThreadPoolExecutor = functools.partial(  # type: ignore[misc]
    lambda max_workers, **kwargs: concurrent.futures.ThreadPoolExecutor(POOL, **kwargs)
)

if __name__ == "__main__":
    sys.exit(main())

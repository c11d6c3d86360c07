"""A stand-in sandbox server (generation 2.x or 3.x) with fault injection.

    from sandbox_emulator import Emulator, Fault

    with Emulator(api=3, containers=2, usage_delay=0.05) as emu:
        emu.url                                   # "http://127.0.0.1:PORT/"
        emu.set_fault("execute", Fault(status=500))
        emu.clear_faults()
        emu.go_down(); emu.come_up()              # refused connections, then back on the same port
        emu.busy_containers                       # containers running a request or restarting

It behaves like the real server as described in SANDBOX_API.md: same routes,
status codes, content types, error texts and quirks of each generation. Commands
really run, with bash, as the current user, in one working directory per
"container" (HOME and cwd, HOSTNAME a 12-hex id); that is why it listens on
loopback only unless `allow_remote=True` / `--allow-remote`.

Settings (keyword arguments; the command line has the same as `--usage-delay` etc.):
api (3), containers (5), host ("127.0.0.1"), port (0 = any free), usage_delay (2.0 s,
the real server samples for 2 s), libraries_delay (1.0 s), overload_wait (2.0 s
before a 503), execute_timeout (10.0 s per request), restart_delay (0.0 s before a
released container is free again), libraries (the /libraries/ document; defaults
to the packaged data/libraries_v2.json or _v3.json), faults ({endpoint: Fault}),
allow_remote (False), expiration (86400 s for saved environments).

Faults, per endpoint ("specifications", "usages", "libraries", "execute",
"environments", "files", or "*" for all; a specific one wins over "*"); they
apply to every request whose path starts with the endpoint's name:
`Fault(latency=0.0, status=None, body=None, drop=False, drip=None,
content_type=None, truncate=None)` -- see `Fault`.

Emulator-only additions (a real server has none of them):
- `POST /_emulator/faults/` with `{"endpoint": "execute", "status": 500, ...}` sets
  a fault (fields as in `Fault`; `body` a string or any JSON value);
  `DELETE /_emulator/faults/` clears all (`?endpoint=NAME` one);
  `GET /_emulator/faults/` lists them.
- `GET /` answers a short text: an API, not a web page, and its endpoints (a
  real server answers 404 there).
- `python -m sandbox_emulator` prints the URL as its first stdout line.

Where it knowingly differs from the real server (the real one answers 500 or
does something unsafe there): a command object with unknown keys is "Command
badly formatted" (400); an upload that is not a .tgz, or would unpack outside
the working directory, is a 400; a `result_path` outside the working directory
or not a regular file is -3; /files/ on a directory is 404; each stream of a
command keeps at most 16 MiB.
"""

from .faults import ALL_ENDPOINTS, ENDPOINTS, Fault, parse_fault_spec
from .routing import CONTROL_PATH
from .server import Emulator, default_libraries

__all__ = [
    "ALL_ENDPOINTS",
    "CONTROL_PATH",
    "ENDPOINTS",
    "Emulator",
    "Fault",
    "default_libraries",
    "parse_fault_spec",
]

"""`sandbox-exporter --demo`: emulated sandboxes on loopback, exported live.

Three emulators: a healthy 2.x server, a healthy 3.x server and a 3.x server
whose pool answers every execute with 503 (the overload fault) and which lacks
an expected compiler, so that failures show up on the pages and in metrics.

The emulators come from the `sandbox_emulator` package, imported here only:
it runs arbitrary commands, so the container image leaves it out, and there
`--demo` says so in one line instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import ExitStack

from .config import parse_config
from .exporter import Exporter

NO_EMULATOR_MESSAGE = (
    "sandbox-exporter: --demo needs the sandbox_emulator package, which this installation "
    "leaves out (the container image does); run the demo from a checkout: pip install ."
)

DEMO_CONFIG = """
defaults:
  intervals: {{specifications: 10s, usage: 10s, libraries: 1m, canary: 5s}}
  expect:
    languages: {{python3: ">=3.7", gcc: present}}
    bin: [bash]
targets:
  - name: demo-v2
    url: {v2}
    labels: {{site: demo, generation: "2"}}
  - name: demo-v3
    url: {v3}
    labels: {{site: demo, generation: "3"}}
    canaries:
      - name: shell
        commands: ["echo $((2+2))"]
        expect_stdout: "4"
      - name: python
        commands: ["python3 -c 'print(6 * 7)'"]
        expect_stdout: "42"
  - name: demo-faulty
    url: {faulty}
    labels: {{site: demo, generation: "3"}}
    expect:
      languages: {{java: ">=17"}}
"""


def run_demo(listen_address: str) -> int:
    from .daemon import serve

    # Only a missing package gets the short message: an emulator that is
    # there but broken still fails loudly when imported below.
    if importlib.util.find_spec("sandbox_emulator") is None:
        print(NO_EMULATOR_MESSAGE, file=sys.stderr)
        return 1
    from sandbox_emulator import Emulator, Fault

    with ExitStack() as stack:
        emulators = {
            "v2": Emulator(api=2, containers=5),
            "v3": Emulator(api=3, containers=5),
            "faulty": Emulator(api=3, containers=2, faults={"execute": Fault(status=503)}),
        }
        for emulator in emulators.values():
            emulator.start()
            stack.callback(emulator.stop)
        urls = {name: json.dumps(emulator.url) for name, emulator in emulators.items()}
        exporter = Exporter(parse_config(DEMO_CONFIG.format(**urls), source="<demo>"))

        def announce(server) -> None:
            lines = [
                "sandbox-exporter demo is running (Ctrl-C to stop):",
                f"  landing page   {server.url}",
                f"  metrics        {server.url}metrics",
                f"  probe          {server.url}probe?target=demo-v3&debug=true",
                *(f"  sandbox {name:<7}{emulator.url}" for name, emulator in emulators.items()),
            ]
            print("\n".join(lines), flush=True)

        return serve(exporter, listen_address, on_started=announce)

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
import shlex
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import quote

from .config import Config, load_config
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


def command_name() -> str:
    """This program as a user types it in another terminal: the bare name when
    the shell finds this very program by it, else its absolute path, or
    `python -m` when it was started that way."""
    started_as = Path(sys.argv[0])
    if started_as.name != "sandbox-exporter":
        return f"{shlex.quote(sys.executable)} -m sandbox_exporter.cli"
    on_path = shutil.which("sandbox-exporter")
    if on_path is not None and Path(on_path).resolve() == started_as.resolve():
        return "sandbox-exporter"
    return shlex.quote(str(started_as.absolute()))


def banner(exporter_url: str, config: Config, config_path: Path) -> str:
    """What the demo prints once it serves: every URL to open (each answers
    200 in a browser), then the one-shot check to paste, last."""
    targets = [(target.name, str(target.url)) for target in config.targets]
    width = max(len("sandbox API ") + len(name) for name, _ in targets)
    rows = [("landing page", exporter_url)]
    rows += [(f"target {name}", f"{exporter_url}target?name={quote(name)}") for name, _ in targets]
    rows += [
        ("metrics", f"{exporter_url}metrics"),
        ("probe", f"{exporter_url}probe?target=demo-v3&debug=true"),
    ]
    # A sandbox is an API: its specifications are what a browser can show.
    rows += [(f"sandbox API {name}", f"{url}specifications/") for name, url in targets]
    once = f"{command_name()} --once -c {shlex.quote(str(config_path))} -t 5"
    return "\n".join(
        [
            "sandbox-exporter demo is running (Ctrl-C to stop):",
            *(f"  {label:<{width}}  {url}" for label, url in rows),
            "Check every sandbox once, from another terminal "
            "(exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN):",
            f"  {once}",
        ]
    )


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
        # A file, so that `--once -c` (and a SIGHUP after editing it) read
        # the very configuration the demo runs; it goes when the demo does.
        directory = Path(stack.enter_context(TemporaryDirectory(prefix="sandbox-exporter-demo-")))
        config_path = directory / "demo.yml"
        urls = {name: json.dumps(emulator.url) for name, emulator in emulators.items()}
        config_path.write_text(DEMO_CONFIG.format(**urls))
        config = load_config(config_path)
        exporter = Exporter(config, config_path)

        def announce(server) -> None:
            print(banner(server.url, config, config_path), flush=True)

        return serve(exporter, listen_address, on_started=announce)

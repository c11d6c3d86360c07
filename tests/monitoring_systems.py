"""Icinga 2 and Nagios 4 as the tests run them: Debian's `icinga2` (package
icinga2-bin) and `nagios4` (nagios4-core), each on a minimal main
configuration of a temporary directory, never /etc or a system service.

- `Icinga(directory)`: `icinga2.conf` in the directory (or another), every
  path Icinga writes (cache, logs, spool, state, pid) under it and the checks
  run as the current user (root in CI: Icinga otherwise drops to user
  nagios), so that `validate()` and `start()` work for root and for anyone
  else;
- `nagios_main_config(directory, ...)`: a nagios.cfg reading the given object
  files and the objects a stock installation defines (24x7, generic-service,
  linux-server), with its files under the directory and the checks run as
  the current user; `nagios_verify()` is `nagios4 -v` on it, `Nagios(main)`
  runs it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from server_process import terminate

VALIDATE_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
ICINGA_DIRECTORIES = ("CacheDir", "LogDir", "SpoolDir", "DataDir", "InitRunDir")


def system_binary(name: str, package: str) -> str:
    """A binary of a Debian package (in /usr/sbin, often not on a user's PATH);
    fails the test when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: ./scripts/test installs Debian's {package}")
    return path


class Icinga:
    """Icinga 2 on `config` (`directory/icinga2.conf` unless given; the caller
    writes it), writing under `directory`."""

    def __init__(self, directory: Path, config: Path | None = None) -> None:
        self.binary = system_binary("icinga2", "icinga2-bin")
        self.directory = directory
        self.config = config or directory / "icinga2.conf"
        self.log_path = directory / "icinga2.out"
        self.process: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        defines = {
            "RunAsUser": pwd.getpwuid(os.getuid()).pw_name,
            "RunAsGroup": grp.getgrgid(os.getgid()).gr_name,
        }
        for name in ICINGA_DIRECTORIES:
            path = self.directory / "var" / name.removesuffix("Dir").lower()
            path.mkdir(parents=True, exist_ok=True)
            defines[name] = str(path)
        return ["daemon", "-c", str(self.config), *(f"-D{k}={v}" for k, v in defines.items())]

    def validate(self) -> subprocess.CompletedProcess[str]:
        """`icinga2 daemon -C`: the configuration compiled and checked, then exit."""
        return subprocess.run(
            [self.binary, *self.arguments(), "-C"],
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT_SECONDS,
            check=False,
        )

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, *self.arguments()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        """SIGTERM (Icinga saves its state and exits), SIGKILL after a bound."""
        process, self.process = self.process, None
        terminate(process, STOP_TIMEOUT_SECONDS)

    @property
    def state_file(self) -> Path:
        return self.directory / "var" / "data" / "icinga2.state"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""


def nagios_binary() -> str:
    return system_binary("nagios4", "nagios4-core")


# What a stock Nagios configuration (Debian's objects/*.cfg, Naemon's sample)
# already defines and the shipped definitions build on.
NAGIOS_STOCK_OBJECTS = """\
define timeperiod {
    timeperiod_name         24x7
    alias                   24 hours a day, 7 days a week
    sunday                  00:00-24:00
    monday                  00:00-24:00
    tuesday                 00:00-24:00
    wednesday               00:00-24:00
    thursday                00:00-24:00
    friday                  00:00-24:00
    saturday                00:00-24:00
}
define command {
    command_name            notify-nobody
    command_line            /bin/true
}
define command {
    command_name            check-host-alive
    command_line            /bin/true
}
define contact {
    contact_name                    nagiosadmin
    host_notification_period        24x7
    service_notification_period     24x7
    host_notification_options       n
    service_notification_options    n
    host_notification_commands      notify-nobody
    service_notification_commands   notify-nobody
}
define service {
    name                    generic-service
    register                0
    check_period            24x7
    notification_period     24x7
    notification_interval   60
    contacts                nagiosadmin
}
define host {
    name                    linux-server
    register                0
    check_command           check-host-alive
    check_period            24x7
    max_check_attempts      10
    notification_period     24x7
    notification_interval   120
    contacts                nagiosadmin
}
"""


def nagios_main_config(
    directory: Path,
    object_files: Sequence[Path] = (),
    object_dirs: Sequence[Path] = (),
    settings: Mapping[str, str | int] | None = None,
) -> Path:
    """`directory/nagios.cfg`, with the stock objects and the given ones
    (and `settings`, e.g. interval_length)."""
    stock = directory / "stock-objects.cfg"
    stock.write_text(NAGIOS_STOCK_OBJECTS)
    lines = [f"cfg_file={path}" for path in (stock, *object_files)]
    lines += [f"cfg_dir={path}" for path in object_dirs]
    state = directory / "var"
    state.mkdir(exist_ok=True)
    for key, name in {
        "log_file": "nagios.log",
        "object_cache_file": "objects.cache",
        "precached_object_file": "objects.precache",
        "status_file": "status.dat",
        "state_retention_file": "retention.dat",
        "command_file": "nagios.cmd",
        "lock_file": "nagios.pid",
        "temp_file": "nagios.tmp",
        "query_socket": "nagios.qh",
    }.items():
        lines.append(f"{key}={state / name}")
    lines += [f"temp_path={state}", f"check_result_path={state}"]
    lines += [
        f"nagios_user={pwd.getpwuid(os.getuid()).pw_name}",
        f"nagios_group={grp.getgrgid(os.getgid()).gr_name}",
        # Debian's value: what the reader's Nagios strips from macro output.
        "illegal_macro_output_chars=`~$&|'\"<>",
    ]
    lines += [f"{key}={value}" for key, value in (settings or {}).items()]
    main = directory / "nagios.cfg"
    main.write_text("\n".join(lines) + "\n")
    return main


def nagios_verify(main_config: Path) -> subprocess.CompletedProcess[str]:
    """`nagios4 -v`: the pre-flight check of the main configuration."""
    return subprocess.run(
        [nagios_binary(), "-v", str(main_config)],
        capture_output=True,
        text=True,
        timeout=VALIDATE_TIMEOUT_SECONDS,
        check=False,
    )


def icinga_state(path: Path) -> dict[str, dict[str, Any]]:
    """The objects of Icinga's state file (written when it stops), by name:
    each a netstring `LENGTH:{"name", "type", "update": attributes},`."""
    data = path.read_bytes()
    objects: dict[str, dict[str, Any]] = {}
    position = 0
    while position < len(data):
        colon = data.index(b":", position)
        length = int(data[position:colon])
        record = json.loads(data[colon + 1 : colon + 1 + length])
        objects[record["name"]] = record["update"]
        position = colon + 1 + length + 1  # the trailing comma
    return objects


class Nagios:
    """Nagios 4 running `main_config` (see nagios_main_config); what it knows of
    its services comes from its status file, rewritten every
    status_update_interval."""

    def __init__(self, main_config: Path) -> None:
        self.binary = nagios_binary()
        self.main_config = main_config
        self.directory = main_config.parent
        self.log_path = self.directory / "nagios.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, str(self.main_config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        """SIGTERM (Nagios stops its workers and exits), SIGKILL after a bound."""
        process, self.process = self.process, None
        terminate(process, STOP_TIMEOUT_SECONDS)

    def services(self) -> dict[tuple[str, str], dict[str, str]]:
        """Each service's status (current_state, plugin_output, performance_data...)
        by (host, description); empty before the first status file."""
        path = self.directory / "var" / "status.dat"
        if not path.is_file():
            return {}
        found = {}
        for block in path.read_text(errors="replace").split("servicestatus {")[1:]:
            fields = dict(re.findall(r"^\t(\w+)=(.*)$", block.split("\t}")[0], re.MULTILINE))
            found[(fields["host_name"], fields["service_description"])] = fields
        return found

    def log(self) -> str:
        parts = [self.log_path, self.directory / "var" / "nagios.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.is_file())

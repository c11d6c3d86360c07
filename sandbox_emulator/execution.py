"""/execute/: config checks with the real server's error texts, and real bash runs.

The checks follow the real server's order and wording (Python type names in
the messages, as Django prints them). Commands run with bash in the
container's working directory, in their own process group so a timeout kills
everything they started.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import selectors
import subprocess
import tarfile
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .pool import Container, kill_process_group

logger = logging.getLogger(__name__)

# What the real server answers when the exec itself fails (e.g. output not UTF-8).
UNKNOWN_ERROR = "An unknown error occurred on the sandbox\n"
STATUS_UNKNOWN = -1
STATUS_TIMEOUT = -2
STATUS_RESULT_NOT_FOUND = -3
STATUS_RESULT_NOT_UTF8 = -4

# A command that prints without end must not eat the emulator's memory: keep
# this much of each stream (a real sandbox has a memory limit too).
OUTPUT_CAP_BYTES = 16 * 2**20
# How often a running command checks for the emulator shutting down.
POLL_SECONDS = 0.2
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class RequestError(Exception):
    """An answer other than 200, with the real server's one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


@dataclass(frozen=True)
class Command:
    command: str
    # Seconds, as given (int or float: the timeout message prints it as given);
    # None when the command has no limit of its own (0, negative, NaN, infinite).
    timeout: int | float | None
    ignore_failure: bool


@dataclass(frozen=True)
class ExecuteRequest:
    commands: tuple[Command, ...]
    environ: dict[str, str]
    result_path: str | None
    save: bool
    environment: str | None  # UUID of a saved environment to start from
    upload: bytes | None  # the uploaded .tgz, merged over the saved environment


def parse_config_text(text: str | None) -> dict:
    """The `config` form field as a JSON object, or the real server's 400."""
    if text is None:
        raise bad_request("Missing argument 'config'")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_request(f"'config' json is invalid - {error}") from None
    except RecursionError:
        raise bad_request("'config' json is invalid - too deeply nested") from None
    if not isinstance(config, dict):
        raise bad_request(f"config must be an object, not {type(config)}")
    return config


def _command_timeout(value: object, default: float) -> int | float | None:
    if value is None:
        return default
    # The real server accepts any int/float, booleans included (they are ints in Python).
    timeout = int(value) if isinstance(value, bool) else value
    if not math.isfinite(timeout) or timeout <= 0:
        return None
    return timeout


def _parse_command(item: object, default_timeout: float) -> Command:
    if isinstance(item, str):
        text, timeout = item, default_timeout
    elif (
        isinstance(item, dict)
        and isinstance(item.get("command"), str)
        and isinstance(item.get("timeout", 0), int | float)
        and set(item) <= {"command", "timeout"}
    ):
        text, timeout = item["command"], _command_timeout(item.get("timeout"), default_timeout)
    else:
        raise bad_request(f"Command badly formatted : '{item}'")
    if text.startswith("-"):
        return Command(text[1:], timeout, ignore_failure=True)
    return Command(text, timeout, ignore_failure=False)


def parse_execute_request(
    config: dict,
    upload: bytes | None,
    *,
    api: int,
    default_timeout: float,
    environment_exists,
) -> ExecuteRequest:
    """Check `config` in the real server's order; raise RequestError with its texts."""
    environment = config.get("environment")
    if environment is not None and not environment_exists(environment):
        raise RequestError(404, f"No environment with UUID '{environment}' found")

    if "commands" not in config:
        raise bad_request("Missing field 'commands' in config")
    if not isinstance(config["commands"], list):
        raise bad_request(f"commands must be a list, not {type(config['commands'])}")
    environ = config.get("environ", {})
    if not isinstance(environ, dict):
        raise bad_request(f"environ must be an object, not {type(environ)}")
    if not config["commands"] and api >= 3:
        raise bad_request("Command list cannot be empty")
    commands = tuple(_parse_command(item, default_timeout) for item in config["commands"])

    result_path = config.get("result_path")
    if "result_path" in config and not isinstance(result_path, str):
        raise bad_request(f"result_path must be a string, not {type(result_path)}")
    save = config.get("save", False)
    if not isinstance(save, bool):
        raise bad_request(f"save must be a boolean, not {type(save)}")

    if upload is not None:
        check_archive(upload)
    return ExecuteRequest(
        commands=commands,
        environ={str(key): str(value) for key, value in environ.items()},
        result_path=result_path,
        save=save,
        environment=environment,
        upload=upload,
    )


def check_archive(data: bytes) -> None:
    """Reject an upload that is not a readable .tgz before a container is taken for it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise bad_request(f"environment must be a .tgz archive: {error}") from None


def _unpack(data: bytes, workdir: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            # The "data" filter refuses absolute paths, '..', and links leading outside.
            archive.extractall(workdir, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise bad_request(f"environment could not be unpacked: {error}") from None


class EnvironmentStore:
    """Saved environments (.tgz files) and when they expire."""

    def __init__(self, root: Path, expiration: float) -> None:
        self._root = root
        self._expiration = expiration
        self._lock = threading.Lock()
        self._expires_at: dict[str, float] = {}  # uuid -> time.time() of expiry
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, env_uuid: object) -> Path | None:
        """The archive of a live environment, None if unknown, expired or not a UUID."""
        if not isinstance(env_uuid, str) or not UUID_PATTERN.match(env_uuid):
            return None
        with self._lock:
            expires_at = self._expires_at.get(env_uuid)
            if expires_at is None:
                return None
            path = self._root / f"{env_uuid}.tgz"
            if time.time() >= expires_at:
                del self._expires_at[env_uuid]
                path.unlink(missing_ok=True)
                return None
            return path

    def exists(self, env_uuid: object) -> bool:
        return self._path(env_uuid) is not None

    def read(self, env_uuid: str) -> bytes:
        path = self._path(env_uuid)
        if path is None:
            raise RequestError(404, f"No environment with UUID '{env_uuid}' found")
        return path.read_bytes()

    def read_member(self, env_uuid: str, member: str) -> bytes:
        data = self.read(env_uuid)
        missing = RequestError(
            404, f"The file '{member}' could not be found in environment '{env_uuid}'"
        )
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            try:
                extracted = archive.extractfile(archive.getmember(member))
            except KeyError:
                raise missing from None
            if extracted is None:  # a directory: nothing to send
                raise missing
            return extracted.read()

    def save(self, workdir: Path) -> tuple[str, float]:
        """Archive the contents of `workdir`; return (uuid, expiry as time.time())."""
        env_uuid = str(uuid.uuid4())
        path = self._root / f"{env_uuid}.tgz"
        with tarfile.open(path, "w:gz") as archive:
            for name in sorted(os.listdir(workdir)):
                archive.add(workdir / name, arcname=name)
        expires_at = time.time() + self._expiration
        with self._lock:
            self._expires_at[env_uuid] = expires_at
        return env_uuid, expires_at

    def restore_into(self, env_uuid: str, workdir: Path) -> None:
        _unpack(self.read(env_uuid), workdir)


@dataclass
class CommandRun:
    entry: dict
    keep_going: bool
    stop_status: int


def _seconds_text(value: int | float) -> str:
    return str(value)


def _timeout_text(api: int, seconds: int | float) -> str:
    noun = "Command" if api >= 3 else "Sandbox"
    return f"{noun} timed out after {_seconds_text(seconds)} seconds\n"


def _collect_output(
    process: subprocess.Popen, stop_at: float, stopping: threading.Event
) -> tuple[bytes, bytes, bool]:
    """Read both pipes until the command ends; (stdout, stderr, timed_out)."""
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)

    def read_ready(wait: float) -> None:
        for key, _ in selector.select(wait):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                continue
            buffer = buffers[key.fd]
            room = OUTPUT_CAP_BYTES - len(buffer)
            if room > 0:
                buffer += chunk[:room]

    timed_out = False
    try:
        while selector.get_map():
            remaining = stop_at - time.monotonic()
            if remaining <= 0 or stopping.is_set():
                timed_out = True
                break
            read_ready(min(remaining, POLL_SECONDS))
            if process.poll() is not None and selector.get_map():
                # bash is gone but a background job holds the pipes: take what is
                # there and stop, as `docker exec` returns when its process exits.
                read_ready(0)
                break
        if not timed_out:
            try:
                process.wait(max(0.0, stop_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        selector.close()
    out, err = (bytes(buffers[stream.fileno()]) for stream in (process.stdout, process.stderr))
    return out, err, timed_out


def run_command(
    command: Command,
    container: Container,
    environ: dict[str, str],
    deadline: float,
    *,
    api: int,
    execute_timeout: float,
    stopping: threading.Event,
) -> CommandRun:
    """Run one command; the entry for `execution` and whether to go on."""
    started = time.time()
    own_limit_at = time.monotonic() + command.timeout if command.timeout is not None else math.inf
    # Whichever comes first: the command's own timeout or the request's budget.
    whole_request_first = deadline < own_limit_at
    stop_at = min(deadline, own_limit_at)
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "HOME": str(container.workdir),
        "HOSTNAME": container.hostname,
        "LANG": "C.UTF-8",
        "PWD": str(container.workdir),
        **environ,
    }
    process = None
    try:
        process = subprocess.Popen(
            ["bash", "-c", command.command],
            cwd=container.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        out, err, timed_out = _collect_output(process, stop_at, stopping)
    except Exception:  # bad environ names, NUL bytes, bash missing: the real "unknown error"
        logger.debug("command %r could not run", command.command, exc_info=True)
        if process is not None:
            kill_process_group(process.pid)
            process.wait()
        return CommandRun(
            _entry(command, STATUS_UNKNOWN, "", UNKNOWN_ERROR, started), False, STATUS_UNKNOWN
        )
    finally:
        if process is not None:
            for stream in (process.stdout, process.stderr):
                stream.close()

    if timed_out:
        kill_process_group(process.pid)
        process.wait()
        seconds = execute_timeout if whole_request_first else command.timeout
        entry = _entry(command, STATUS_TIMEOUT, "", _timeout_text(api, seconds), started)
        # A '-' command may time out and the run goes on; the whole request may not.
        keep_going = command.ignore_failure and not whole_request_first and not stopping.is_set()
        return CommandRun(entry, keep_going, STATUS_TIMEOUT)

    if _group_alive(process.pid):
        container.process_groups.add(process.pid)
    try:
        stdout, stderr = out.decode("utf-8").strip(), err.decode("utf-8").strip()
    except UnicodeDecodeError:
        return CommandRun(
            _entry(command, STATUS_UNKNOWN, "", UNKNOWN_ERROR, started), False, STATUS_UNKNOWN
        )
    exit_code = process.returncode
    if exit_code < 0:  # killed by a signal: bash would report 128 + signal
        exit_code = 128 - exit_code
    entry = _entry(command, exit_code, stdout, stderr, started)
    return CommandRun(entry, exit_code == 0 or command.ignore_failure, exit_code)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _entry(command: Command, exit_code: int, stdout: str, stderr: str, started: float) -> dict:
    return {
        "command": command.command,
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "time": time.time() - started,
    }


def read_result(workdir: Path, result_path: str, api: int) -> str | int:
    """The result file's text, or -3 (missing) / -4 (not UTF-8).

    The path must stay inside the working directory: a real container could
    not read the host either.
    """
    root = workdir.resolve()
    try:
        target = (root / result_path).resolve()
        # Only a regular file inside the working directory: reading a FIFO would block.
        if root not in target.parents or not target.is_file():
            return STATUS_RESULT_NOT_FOUND
        data = target.read_bytes()
    except (OSError, ValueError):
        return STATUS_RESULT_NOT_FOUND
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return STATUS_RESULT_NOT_UTF8
    return text.strip() if api < 3 else text


def format_expiry(expires_at: float, api: int) -> str:
    moment = datetime.fromtimestamp(expires_at, tz=UTC)
    if api < 3:
        return moment.replace(tzinfo=None).isoformat()
    return moment.isoformat()


def execute(
    request: ExecuteRequest,
    container: Container,
    environments: EnvironmentStore,
    *,
    api: int,
    execute_timeout: float,
    stopping: threading.Event,
) -> dict:
    """Run a checked request in `container`; the /execute/ response document."""
    started = time.time()
    deadline = time.monotonic() + execute_timeout
    if request.environment is not None:
        environments.restore_into(request.environment, container.workdir)
    if request.upload is not None:
        _unpack(request.upload, container.workdir)

    status = 0
    execution = []
    for command in request.commands:
        run = run_command(
            command,
            container,
            request.environ,
            deadline,
            api=api,
            execute_timeout=execute_timeout,
            stopping=stopping,
        )
        execution.append(run.entry)
        if not run.keep_going:
            status = run.stop_status
            break
    response: dict = {"status": status, "execution": execution, "total_time": time.time() - started}

    if request.result_path is not None and status == 0:
        result = read_result(container.workdir, request.result_path, api)
        if isinstance(result, int):
            response["status"] = result
        else:
            response["result"] = result
    if request.save:
        env_uuid, expires_at = environments.save(container.workdir)
        response["environment"] = env_uuid
        response["expire"] = format_expiry(expires_at, api)
    return response

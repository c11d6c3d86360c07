"""The Emulator object: its settings, its life cycle (start, stop, go down, come
up), the faults and documents it serves, and the views that answer each endpoint."""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
from email.message import Message
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from . import hostinfo
from .answers import JSON, NOT_FOUND_PAGE, Answer, json_answer, text_answer
from .execution import (
    UUID_PATTERN,
    EnvironmentStore,
    RequestError,
    execute,
    parse_config_text,
    parse_execute_request,
)
from .faults import Fault, FaultBoard, check_endpoint, fault_from_json
from .forms import parse_form
from .handler import Application, Connections, Listener
from .pool import ContainerPool
from .routing import (
    CONTROL_PATH,
    ROOT_PATH,
    VIEW_METHODS,
    match_route,
    method_not_allowed,
    root_page,
)

logger = logging.getLogger(__name__)

SANDBOX_VERSIONS = {2: "2.0.3", 3: "3.0.3"}
DOCKER_VERSION = "28.2.2"
DEFAULT_EXPIRATION_SECONDS = 86400
# How long stop() lets in-flight requests finish before cutting their connections.
STOP_GRACE_SECONDS = 2.0
STOP_JOIN_SECONDS = 10.0
# serve_forever() notices shutdown() only between polls: short, so stop() and go_down() are quick.
LISTENER_POLL_SECONDS = 0.02

OVERLOADED = {
    3: "Sandbox overloaded, retry after a few seconds.",
    2: "Sandbox overloaded, retry after a few secondes.",
}


def is_loopback(host: str) -> bool:
    """True if every address `host` stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve host {host!r}: {error}") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _encode_libraries(document: object) -> bytes:
    if not isinstance(document, dict | list):
        raise TypeError(
            f"the libraries document must be a JSON object (dict), got {type(document).__name__}"
        )
    try:
        return json.dumps(document).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"the libraries document is not JSON-serializable: {error}") from None


def default_libraries(api: int) -> dict:
    """The packaged /libraries/ document of generation `api`."""
    data = resources.files(__package__).joinpath("data", f"libraries_v{api}.json").read_bytes()
    return json.loads(data)


class Emulator:
    """A stand-in sandbox server of generation `api` (2 or 3) on loopback.

    Commands really run, with bash, as the current user: that is why it refuses
    a non-loopback address unless `allow_remote=True`.
    """

    def __init__(
        self,
        api: int = 3,
        containers: int = 5,
        host: str = "127.0.0.1",
        port: int = 0,
        usage_delay: float = 2.0,
        libraries_delay: float = 1.0,
        overload_wait: float = 2.0,
        execute_timeout: float = 10.0,
        restart_delay: float = 0.0,
        libraries: dict | None = None,
        faults: dict[str, Fault] | None = None,
        allow_remote: bool = False,
        expiration: float = DEFAULT_EXPIRATION_SECONDS,
    ) -> None:
        if api not in SANDBOX_VERSIONS or isinstance(api, bool):
            raise ValueError(f"api must be 2 or 3, got {api!r}")
        if isinstance(containers, bool) or not isinstance(containers, int) or containers < 0:
            raise ValueError(f"containers must be an integer >= 0, got {containers!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer 0..65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a host name or address, got {host!r}")
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback address {host!r}: the emulator runs "
                "arbitrary commands as the current user; pass allow_remote=True "
                "(--allow-remote) to do it anyway"
            )
        self.api = api
        self.containers = containers
        self.host = host
        self.usage_delay = _check_seconds("usage_delay", usage_delay)
        self.libraries_delay = _check_seconds("libraries_delay", libraries_delay)
        self.overload_wait = _check_seconds("overload_wait", overload_wait)
        self.execute_timeout = _check_seconds("execute_timeout", execute_timeout)
        self.restart_delay = _check_seconds("restart_delay", restart_delay)
        self.expiration = _check_seconds("expiration", expiration)
        self.allow_remote = allow_remote
        self._libraries_body = _encode_libraries(
            default_libraries(api) if libraries is None else libraries
        )
        self._faults = FaultBoard(faults)
        self._port = port
        self._bound_host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: Listener | None = None
        self._listener_thread: threading.Thread | None = None
        self._connections = Connections()
        self._application = Application(self._answer, self._faults, self._stopping)
        self._workdir: Path | None = None
        self._pool: ContainerPool | None = None
        self._environments: EnvironmentStore | None = None
        self._started = False
        #: Requests that reached each endpoint ("execute", "specifications", ...),
        #: faults or not: what tests count to know what the server was asked.
        self.requests_by_endpoint: collections.Counter[str] = collections.Counter()

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Emulator:
        """Create the containers' directories and start listening; returns self."""
        if self._started:
            raise RuntimeError("the emulator is already started (an Emulator starts once)")
        self._started = True
        self._workdir = Path(tempfile.mkdtemp(prefix="sandbox-emulator-"))
        try:
            self._pool = ContainerPool(
                self._workdir / "containers_env",
                self.containers,
                self.restart_delay,
                self._stopping,
            )
            self._environments = EnvironmentStore(self._workdir / "environments", self.expiration)
            self._open_listener()
        except BaseException:
            self._stopping.set()
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        logger.info("sandbox %s emulator listening on %s", SANDBOX_VERSIONS[self.api], self.url)
        return self

    def stop(self) -> None:
        """Stop listening, kill running commands, wait for threads, remove the temp dir."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self._close_listener()
        if self._pool is not None:
            self._pool.shutdown(STOP_JOIN_SECONDS)
        if self._connections.join(STOP_GRACE_SECONDS):
            self._connections.cut()
            stuck = self._connections.join(STOP_JOIN_SECONDS)
            if stuck:
                logger.warning("%d connection threads did not finish in time", stuck)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        logger.info("sandbox emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def go_down(self) -> None:
        """Close the listening socket: new connections are refused. In-flight requests finish."""
        self._require_running()
        self._close_listener()

    def come_up(self) -> None:
        """Listen again, on the same port."""
        self._require_running()
        with self._lock:
            if self._listener is not None:
                return
        self._open_listener()

    # -- state --------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL with the trailing slash, e.g. "http://127.0.0.1:8000/"."""
        if not self._started:
            raise RuntimeError("the emulator is not started; call start() first")
        host = self._bound_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}/"

    @property
    def port(self) -> int:
        return self._port

    @property
    def is_up(self) -> bool:
        with self._lock:
            return self._listener is not None

    @property
    def busy_containers(self) -> int:
        """Containers not free now (running a request or restarting)."""
        return self._pool.busy if self._pool is not None else 0

    @property
    def workdir(self) -> Path | None:
        """The temporary directory holding containers and environments (None before start)."""
        return self._workdir

    @property
    def faults(self) -> dict[str, Fault]:
        return self._faults.snapshot()

    def set_fault(self, endpoint: str, fault: Fault) -> None:
        """Make `endpoint` ("execute", ..., or "*" for all) misbehave as `fault` says."""
        self._faults.set(endpoint, fault)

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Remove every fault, or only the one of `endpoint`."""
        self._faults.clear(endpoint)

    def set_libraries(self, document: dict) -> None:
        """Replace the /libraries/ document."""
        body = _encode_libraries(document)
        with self._lock:
            self._libraries_body = body

    # -- internals: listening -----------------------------------------------

    def _require_running(self) -> None:
        if not self._started or self._stopping.is_set():
            raise RuntimeError("the emulator is not running")

    def _open_listener(self) -> None:
        infos = socket.getaddrinfo(self.host, self._port, type=socket.SOCK_STREAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, like most clients
        family, _, _, _, address = infos[0]
        try:
            listener = Listener(address, family, self._application, self._connections)
        except OSError as error:
            raise OSError(
                error.errno, f"cannot listen on {self.host} port {self._port}: {error.strerror}"
            ) from None
        self._port = listener.server_address[1]
        self._bound_host = listener.server_address[0]
        thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": LISTENER_POLL_SECONDS},
            name="emulator-listener",
            daemon=True,
        )
        with self._lock:
            self._listener, self._listener_thread = listener, thread
        thread.start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, thread = self._listener, self._listener_thread
            self._listener = self._listener_thread = None
        if listener is None:
            return
        listener.shutdown()
        listener.server_close()
        if thread is not None:
            thread.join()

    # -- internals: answering -----------------------------------------------

    def _answer(
        self, method: str, path: str, query: str, headers: Message, body: bytes
    ) -> Answer | None:
        if path == CONTROL_PATH:
            return self._control(method, query, body)
        if path == ROOT_PATH and method in ("GET", "HEAD"):
            page = root_page(self.api, SANDBOX_VERSIONS[self.api])
            return text_answer(200, page, "text/plain; charset=utf-8")
        return self._route(method, path, headers, body)

    def _route(self, method: str, path: str, headers: Message, body: bytes) -> Answer | None:
        routed = match_route(path)
        if routed is None:
            return Answer(404, NOT_FOUND_PAGE)
        endpoint, params = routed
        with self._lock:
            self.requests_by_endpoint[endpoint] += 1
        methods = VIEW_METHODS[self.api].get(endpoint)
        if methods is None or ("env" in params and not UUID_PATTERN.match(params["env"])):
            return Answer(404, NOT_FOUND_PAGE)
        if method not in methods:
            return method_not_allowed(self.api, method, methods)
        try:
            return getattr(self, f"_view_{endpoint}")(params, headers, body)
        except RequestError as error:
            return text_answer(error.status, error.message)

    def _view_specifications(self, params, headers, body) -> Answer:
        if self.api >= 3:
            document = hostinfo.specifications_v3(
                str(self._workdir), self.containers, SANDBOX_VERSIONS[3], DOCKER_VERSION
            )
        else:
            expiration = int(self.expiration) if self.expiration.is_integer() else self.expiration
            document = hostinfo.specifications_v2(
                self.containers,
                self.busy_containers,
                self.execute_timeout,
                expiration,
                SANDBOX_VERSIONS[2],
                DOCKER_VERSION,
            )
        return json_answer(document)

    def _view_usages(self, params, headers, body) -> Answer | None:
        document = hostinfo.usages_v3(
            str(self._workdir), lambda: self.busy_containers, self.usage_delay, self._stopping
        )
        return None if document is None else json_answer(document)

    def _view_libraries(self, params, headers, body) -> Answer | None:
        # The real server starts a fresh container to list them: it takes a while.
        if self.libraries_delay > 0 and self._stopping.wait(self.libraries_delay):
            return None
        with self._lock:
            return Answer(200, self._libraries_body, JSON)

    def _view_environments(self, params, headers, body) -> Answer:
        env = params["env"]
        data = self._environments.read(env)
        return Answer(
            200,
            data,
            "application/gzip",
            [("Content-Disposition", f"attachment; filename={env}.tgz")],
        )

    def _view_files(self, params, headers, body) -> Answer:
        env, member = params["env"], params["path"]
        data = self._environments.read_member(env, member)
        return Answer(
            200,
            data,
            "application/octet-stream",
            [("Content-Disposition", f"attachment; filename={os.path.basename(member)}")],
        )

    def _view_execute(self, params, headers, body) -> Answer | None:
        form = parse_form(headers.get("Content-Type"), body)
        config = parse_config_text(form.fields.get("config"))
        request = parse_execute_request(
            config,
            form.files.get("environment"),
            api=self.api,
            default_timeout=self.execute_timeout,
            environment_exists=self._environments.exists,
        )
        container = self._pool.acquire(self.overload_wait)
        if container is None:
            if self._stopping.is_set():
                return None
            return text_answer(503, OVERLOADED[self.api])
        try:
            document = execute(
                request,
                container,
                self._environments,
                api=self.api,
                execute_timeout=self.execute_timeout,
                stopping=self._stopping,
            )
        finally:
            self._pool.release(container)
        if self._stopping.is_set():
            return None
        return json_answer(document)

    def _control(self, method: str, query: str, body: bytes) -> Answer:
        """Emulator-only: change faults from outside Python. Not part of the sandbox API."""
        plain = "text/plain; charset=utf-8"
        if method == "GET":
            return json_answer({name: fault.to_json() for name, fault in self.faults.items()})
        if method == "POST":
            try:
                endpoint, fault = fault_from_json(json.loads(body or b"null"))
            except json.JSONDecodeError as error:
                return text_answer(400, f"the fault must be JSON: {error}", plain)
            except (TypeError, ValueError) as error:
                return text_answer(400, str(error), plain)
            self.set_fault(endpoint, fault)
            logger.info("fault set on %s: %s", endpoint, fault)
            return json_answer({"endpoint": endpoint, "fault": fault.to_json()})
        if method == "DELETE":
            endpoint = parse_qs(query).get("endpoint", [None])[-1]
            try:
                self.clear_faults(None if endpoint is None else check_endpoint(endpoint))
            except ValueError as error:
                return text_answer(400, str(error), plain)
            return json_answer({name: fault.to_json() for name, fault in self.faults.items()})
        return Answer(405, b"", plain, [("Allow", "GET, POST, DELETE")])

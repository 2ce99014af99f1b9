"""The embedded AWS: moto's server on loopback, with the project's patches, in a thread or a process.

In a test or a script::

    with Emulator() as aws:                       # a free port on 127.0.0.1, patches installed
        env = aws.client_environment()            # os.environ without AWS_*, plus the emulator's
        subprocess.run(["cdk", "deploy", ...], env=env)
        boto3.client("s3", endpoint_url=aws.endpoint, ...)

As a long-lived process (what ``panopipe local up`` starts)::

    python -m local_aws.emulator --port 0 --state-file .panopipe/local.json

writes ``{"endpoint", "port", "pid", "region", ...}`` to the state file once it serves, and stops
cleanly on SIGTERM or SIGINT (function processes killed, state file removed). :func:`launch`,
:func:`read_state` and :func:`terminate` do that from Python.

Only loopback addresses are accepted for listening. Clients use ``http://localhost:PORT``, not
``127.0.0.1``: moto reads the bucket of an S3 URL such as a CloudFormation TemplateURL from the host
name, and mistakes ``127.0.0.1`` for one.

Extra services plug in as WSGI middleware: ``Emulator(wrap=...)`` (or ``--wrap module:callable``)
receives moto's WSGI application and returns the one to serve, e.g. a dispatcher that sends the
Panorama API to the project's local Panorama service and everything else to moto. A CloudFormation
resource type defined by such a module (a ``CloudFormationModel`` subclass) is picked up when the
module is imported before :meth:`Emulator.start` returns.

The emulator's own control routes, under ``/_panopipe/``:

- ``GET /_panopipe/health`` → ``{"status": "ok", "endpoint": ...}``
- ``POST /_panopipe/sagemaker/fail`` ``{"job": "<name substring>", "reason": "..."}``: matching
  training/compilation jobs end Failed with that FailureReason
- ``POST /_panopipe/sagemaker/metrics`` ``{"job": "<name substring>", "metrics": {"name": value}}``:
  the final metric values matching training jobs report
- ``POST /_panopipe/reset``: forget every resource (moto's state and the jobs' progress; a
  service added by ``wrap`` keeps its own)

A wrap sees these routes' requests first, so it may serve control routes of its own under
``/_panopipe/``; unknown ones end here with 404.

State lives in memory: it is gone when the emulator stops. moto's state is process-wide: one
emulator per process.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from local_aws import moto_patches, sagemaker_jobs
from local_aws.sagemaker_jobs import SageMakerSettings

LOG = logging.getLogger(__name__)

#: What a client needs besides the endpoint: fake credentials (the emulator accepts any) and no
#: access to the developer's real AWS configuration or to instance metadata.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
DEFAULT_REGION = "us-east-1"
CONTROL_PREFIX = "/_panopipe/"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

WSGIMiddleware = Callable[[WSGIApplication], WSGIApplication]


def client_env(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The ``AWS_*`` variables a client process needs to use the emulator at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        **FAKE_CREDENTIALS,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def clean_environment(env: Mapping[str, str], endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """``env`` without any ``AWS_*`` (profiles, real credentials, endpoints) plus :func:`client_env`."""
    clean = {key: value for key, value in env.items() if not key.startswith("AWS_")}
    clean.update(client_env(endpoint, region))
    return clean


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` → ``127.0.0.1``); anything else is refused."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"the emulator listens on loopback only, not on {host!r}")


def _request_handler(quiet: bool) -> type[Any]:
    """Moto's request handler (it keeps S3 metadata headers with underscores), without access logs if quiet."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    if not quiet:
        return MotoRequestHandler

    class QuietRequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            LOG.debug("%s %s %s", self.command, self.path, code)

    return QuietRequestHandler


class _ControlRoutes:
    """WSGI middleware serving ``/_panopipe/...`` and passing everything else on."""

    def __init__(self, app: WSGIApplication, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(CONTROL_PREFIX):
            return self.app(environ, start_response)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        try:
            body = self._body(environ)
            status, document = self.route(method, path[len(CONTROL_PREFIX) :].rstrip("/"), body)
        except (ValueError, KeyError, TypeError) as error:
            status, document = "400 Bad Request", {"error": str(error)}
        data = json.dumps(document).encode("utf-8")
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _body(environ: WSGIEnvironment) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        document = json.loads(raw) if raw.strip() else {}
        if not isinstance(document, dict):
            raise ValueError("the body must be a JSON object")
        return document

    def route(self, method: str, route: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(HTTP status, JSON document) for one control request."""
        if (method, route) == ("GET", "health"):
            return "200 OK", {"status": "ok", "endpoint": self.emulator.endpoint, "pid": os.getpid()}
        if (method, route) == ("POST", "sagemaker/fail"):
            sagemaker_jobs.TRACKER.request_failure(str(body["job"]), body.get("reason"))
            return "200 OK", {"job": body["job"], "fails": True}
        if (method, route) == ("POST", "sagemaker/metrics"):
            metrics = body["metrics"]
            if not isinstance(metrics, dict):
                raise ValueError("metrics must be an object of name: value")
            sagemaker_jobs.TRACKER.set_metrics(str(body["job"]), metrics)
            return "200 OK", {"job": body["job"], "metrics": metrics}
        if (method, route) == ("POST", "reset"):
            self.emulator.reset()
            return "200 OK", {"reset": True}
        return "404 Not Found", {"error": f"no control route {method} {CONTROL_PREFIX}{route}"}


class Emulator:
    """moto's server with the project's patches, serving on a loopback port from a background thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        region: str = DEFAULT_REGION,
        sagemaker: SageMakerSettings | None = None,
        lambda_cache_dir: Path | None = None,
        lambda_python: str | None = None,
        lambda_extra_env: Mapping[str, str] | None = None,
        wrap: WSGIMiddleware | None = None,
        log_requests: bool = False,
    ) -> None:
        """Configure; nothing listens before :meth:`start`. ``port=0`` picks a free port."""
        self.host = loopback_host(host)
        self.requested_port = port
        self.region = region
        self.sagemaker = sagemaker or SageMakerSettings()
        self.lambda_cache_dir = lambda_cache_dir
        self.lambda_python = lambda_python or sys.executable
        self.lambda_extra_env = dict(lambda_extra_env or {})
        self.wrap = wrap
        self.log_requests = log_requests
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port, install the patches and serve; returns once requests are answered."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        if moto_patches.installed() is not None:
            raise RuntimeError("another emulator runs in this process (moto's state is process-wide)")
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app: WSGIApplication = _ControlRoutes(DomainDispatcherApplication(create_backend_app), self)
        if self.wrap is not None:
            app = self.wrap(app)  # outermost: a wrap may serve control routes of its own under /_panopipe/
        _forget_cloudformation_types()  # resource types defined by the wrap's modules count from now
        handler = _request_handler(quiet=not self.log_requests)
        server = make_server(self.host, self.requested_port, app, threaded=True, request_handler=handler)
        self._port = int(server.server_port)
        try:
            moto_patches.install(
                moto_patches.PatchSettings(
                    endpoint=self.endpoint,
                    lambda_cache_dir=self.lambda_cache_dir or moto_patches.default_lambda_cache_dir(),
                    lambda_python=self.lambda_python,
                    lambda_extra_env=self.lambda_extra_env,
                    sagemaker=self.sagemaker,
                )
            )
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="panopipe-emulator", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)
        LOG.info("AWS emulator serving at %s", self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving, kill every function process, undo the patches and forget the state (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        atexit.unregister(self.stop)
        server.shutdown()
        if thread is not None:
            thread.join(5)
        moto_patches.uninstall()
        server.server_close()
        _reset_moto()
        LOG.info("AWS emulator at port %s stopped", self._port)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the emulator serves requests."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://localhost:PORT``: what AWS_ENDPOINT_URL must be."""
        return f"http://localhost:{self.port}"

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables a client process needs (endpoint, fake credentials, region)."""
        return client_env(self.endpoint, self.region)

    def client_environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a client process: ``base`` minus ``AWS_*``, plus :meth:`env`.

        ``base`` defaults to ``os.environ``; dropping its ``AWS_*`` variables keeps profiles and
        real credentials out.
        """
        return clean_environment(os.environ if base is None else base, self.endpoint, self.region)

    # -- control -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every resource: moto's state and the SageMaker jobs' progress."""
        _reset_moto()

    def fail_sagemaker_jobs(self, job: str, reason: str | None = None) -> None:
        """Jobs whose name contains ``job`` end Failed (with ``reason``), like the control route."""
        sagemaker_jobs.TRACKER.request_failure(job, reason)


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    sagemaker_jobs.TRACKER.reset()


def _forget_cloudformation_types() -> None:
    """Moto caches the CloudFormation resource types it knows on first use; re-read them."""
    from moto.cloudformation import parsing

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


# --------------------------------------------------------------------------------------------------
# The emulator as a separate, long-lived process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorState:
    """What the state file of a running emulator process says."""

    endpoint: str
    port: int
    pid: int
    region: str = DEFAULT_REGION
    started: float = 0.0

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables a client process needs."""
        return client_env(self.endpoint, self.region)

    def alive(self) -> bool:
        """Whether the process still exists."""
        return _pid_alive(self.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_state(path: Path, state: EmulatorState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(asdict(state), handle, indent=1)
    Path(handle.name).replace(path)


def read_state(path: Path) -> EmulatorState | None:
    """The state of the emulator process that wrote ``path``, or None (no file, or the process is gone)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        state = EmulatorState(**document)
    except (OSError, ValueError, TypeError):
        return None
    return state if state.alive() else None


def launch(
    state_file: Path,
    *,
    port: int = 0,
    region: str = DEFAULT_REGION,
    wrap: str | None = None,
    extra_args: Sequence[str] = (),
    log_file: Path | None = None,
    timeout: float = 60.0,
) -> EmulatorState:
    """Start ``python -m local_aws.emulator`` detached and wait until it serves.

    Its output goes to ``log_file`` (default: the state file's name with ``.log``). Raises
    RuntimeError with the log's tail if it does not come up within ``timeout`` seconds.
    """
    state_file = Path(state_file).resolve()
    existing = read_state(state_file)
    if existing is not None:
        raise RuntimeError(f"an emulator already runs at {existing.endpoint} (pid {existing.pid}, {state_file})")
    state_file.unlink(missing_ok=True)
    log_path = Path(log_file) if log_file else state_file.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "local_aws.emulator", "--port", str(port), "--region", region]
    command += ["--state-file", str(state_file), *extra_args]
    if wrap:
        command += ["--wrap", wrap]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_file)
        if state is not None and state.pid == child.pid:
            return state
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"the emulator did not start (exit {child.poll()}); its log {log_path} ends:\n{tail}")


def terminate(state_file: Path, timeout: float = 15.0) -> bool:
    """Stop the emulator process of ``state_file`` (SIGTERM, then SIGKILL); False if none ran."""
    state = read_state(state_file)
    if state is None or not _serves(state):  # gone, or its pid now belongs to another process
        Path(state_file).unlink(missing_ok=True)
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(state.pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)  # reap it if it is our child
        time.sleep(0.05)
    if _pid_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    Path(state_file).unlink(missing_ok=True)
    return True


def _serves(state: EmulatorState) -> bool:
    """Whether the emulator at ``state.endpoint`` answers its health route with ``state.pid``."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{state.endpoint}{CONTROL_PREFIX}health", timeout=3) as response:
            return int(json.loads(response.read()).get("pid", -1)) == state.pid
    except (OSError, ValueError):
        return False


def _load_wrap(spec: str) -> WSGIMiddleware:
    """``module:callable`` → the callable (a WSGI middleware factory)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--wrap wants module:callable, not {spec!r}")
    target = getattr(importlib.import_module(module_name), attribute)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    middleware: WSGIMiddleware = target
    return middleware


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_aws.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--state-file", type=Path, help="write endpoint and pid here once serving")
    parser.add_argument("--wrap", help="module:callable taking moto's WSGI app and returning the app to serve")
    parser.add_argument("--sagemaker-describes", type=int, default=SageMakerSettings.in_progress_describes)
    parser.add_argument("--sagemaker-seconds", type=float, default=SageMakerSettings.in_progress_seconds)
    parser.add_argument("--fail-job", action="append", default=[], help="jobs whose name contains this fail")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; write and finally remove the state file."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # moto repeats this at every reference to a skipped resource; the stack events say it once
    logging.getLogger("moto").addFilter(lambda record: "No Moto CloudFormation support" not in record.getMessage())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = Emulator(
        port=args.port,
        host=args.host,
        region=args.region,
        sagemaker=SageMakerSettings(
            in_progress_describes=args.sagemaker_describes,
            in_progress_seconds=args.sagemaker_seconds,
            fail_jobs=set(args.fail_job),
        ),
        wrap=_load_wrap(args.wrap) if args.wrap else None,
    )
    emulator.start()
    state_file: Path | None = args.state_file.resolve() if args.state_file else None
    try:
        if state_file is not None:
            state = EmulatorState(emulator.endpoint, emulator.port, os.getpid(), args.region, time.time())
            _write_state(state_file, state)
        print(f"panopipe local emulator: {emulator.endpoint} (pid {os.getpid()})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        if state_file is not None:
            state_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

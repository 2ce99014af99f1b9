"""The local AWS: moto's server on loopback with the project's patches and the local Panorama service.

The pipeline's stacks must be deployable and its runs observable without an AWS account: the real
CDK CLI deploys the real templates here and the real state machine runs the real handlers. moto in
server mode is the base; ``moto_patches`` adds what it lacks, ``panorama_service`` is mounted on the
same port (:func:`~local_aws.panorama_service.mount`), so one ``AWS_ENDPOINT_URL`` serves everything.

In a test or a script::

    with Emulator(panorama=PanoramaBackend(devices=["local-device-1"])) as aws:
        subprocess.run(["cdk", "deploy", ...], env={**os.environ, **aws.env()})
        boto3.client("s3", endpoint_url=aws.endpoint, ...)

As a long-lived process (what ``panopipe local up`` starts through ``emulator_process.launch``)::

    python -m local_aws.emulator --port 0 --state-file .panopipe/local.json --panorama-device local-device-1

writes ``{"endpoint", "port", "pid", "region", ...}`` to the state file once it serves, and stops
cleanly on SIGTERM or SIGINT (function processes killed, state file removed).
Devices are ``--panorama-device NAME[,key=value...]`` (or ``id:<device id>[,key=value...]``; the
tags are what ListDevices and DescribeDevice report, see ``panorama_devices``), repeatable, and
``--panorama-devices N[,key=value...]`` for ``local-device-1`` … ``local-device-N``. The devices run
what is deployed to them (``local_aws.appliance``), the first ``--appliance-devices K`` of them only
(default :data:`~local_aws.appliance.runner.DEFAULT_APPLIANCE_DEVICES`, where the measured cost of a
running device is given): the others simulate a healthy device, so a fleet of 200 fits on a laptop.
There, training jobs run their code for real (``--sagemaker-training run``, the default:
``sagemaker_job_container``; each job's folder and ``training.log`` under ``.panopipe/jobs/<job>/``);
an ``Emulator`` made in a test keeps the fast placeholder jobs unless given
``SageMakerSettings(run_training=True)``.

Only loopback addresses are accepted for listening. Clients use ``http://localhost:PORT``, not
``127.0.0.1``: moto reads the bucket of an S3 URL such as a CloudFormation TemplateURL from the host
name, and mistakes ``127.0.0.1`` for one.

The emulator's own control routes, under ``/_panopipe/`` (``emulator_process.control`` calls them):

- ``GET health`` → ``{"status": "ok", "endpoint": ..., "pid": ...}``
- ``POST sagemaker/fail`` ``{"job": "<name substring>", "reason": "..."}``: matching
  training/compilation jobs end Failed with that FailureReason
- ``POST sagemaker/metrics`` ``{"job": "<name substring>", "metrics": {"name": value}}``: the final
  metric values matching training jobs report
- ``POST panorama/fail-deployments`` ``{"device": "<id or name>", "count": n, "reason": "...",
  "crash": false}``: the next ``n`` deployments on that device end DEPLOYMENT_FAILED, or with
  ``crash`` deploy and then report HealthStatus ERROR (404 for an unknown device)
- ``POST reset``: forget every resource (moto's state, the jobs' progress, Panorama's packages and
  application instances; the devices stay)

State lives in memory: it is gone when the emulator stops. moto's state is process-wide: one
emulator per process.
"""

from __future__ import annotations

import argparse
import atexit
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from local_aws import moto_patches, sagemaker_job_progress
from local_aws.appliance import ApplianceSettings
from local_aws.appliance.runner import DEFAULT_APPLIANCE_DEVICES
from local_aws.emulator_process import CONTROL_PREFIX, DEFAULT_REGION, EmulatorState, client_env, write_state
from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_devices import (
    MAX_LOCAL_DEVICES,
    NUMBERED_PREFIX,
    device_records,
    parse_device,
    parse_numbered,
)
from local_aws.panorama_errors import PanoramaError
from local_aws.panorama_service import mount
from local_aws.sagemaker_job_progress import SageMakerSettings

LOG = logging.getLogger(__name__)

#: The appliance of the local Panorama service when the command line names none.
_DEFAULT_DEVICE = "local-device-1"


def _loopback_host(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` → ``127.0.0.1``); anything else is refused."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"the emulator listens on loopback only, not on {host!r}")


def _request_handler() -> type[Any]:
    """Moto's request handler (it keeps S3 metadata headers with underscores), access logs at DEBUG."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

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
        except PanoramaError as error:  # e.g. an unknown device
            status, document = f"{error.status} {error.code}", {"error": error.message}
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
            sagemaker_job_progress.TRACKER.request_failure(str(body["job"]), body.get("reason"))
            return "200 OK", {"job": body["job"], "fails": True}
        if (method, route) == ("POST", "sagemaker/metrics"):
            metrics = body["metrics"]
            if not isinstance(metrics, dict):
                raise ValueError("metrics must be an object of name: value")
            sagemaker_job_progress.TRACKER.set_metrics(str(body["job"]), metrics)
            return "200 OK", {"job": body["job"], "metrics": metrics}
        if (method, route) == ("POST", "panorama/fail-deployments"):
            device, reason = str(body["device"]), body.get("reason")
            count = int(body.get("count", 1))
            pending = self.emulator.panorama.fail_next_deployments(
                device, count, str(reason) if reason else None, crash=bool(body.get("crash", False))
            )
            return "200 OK", {"device": device, "pendingFailures": pending}
        if (method, route) == ("POST", "reset"):
            self.emulator.reset()
            return "200 OK", {"reset": True}
        return "404 Not Found", {"error": f"no control route {method} {CONTROL_PREFIX}{route}"}


class Emulator:
    """moto's server with the project's patches and the local Panorama service, on a loopback port."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        region: str = DEFAULT_REGION,
        sagemaker: SageMakerSettings | None = None,
        panorama: PanoramaBackend | None = None,
        lambda_cache_dir: Path | None = None,
    ) -> None:
        """Configure; nothing listens before :meth:`start`. ``port=0`` picks a free port.

        ``panorama`` is the local Panorama service's state (default: no devices, this Region).
        """
        self.host = _loopback_host(host)
        self.requested_port = port
        self.region = region
        self.sagemaker = sagemaker or SageMakerSettings()
        self.panorama = panorama or PanoramaBackend(region=region)
        self.lambda_cache_dir = lambda_cache_dir
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

        # outermost: Panorama (told apart by its signature), then the control routes, then moto
        app = mount(_ControlRoutes(DomainDispatcherApplication(create_backend_app), self), self.panorama)
        server = make_server(self.host, self.requested_port, app, threaded=True, request_handler=_request_handler())
        self._port = int(server.server_port)
        try:
            moto_patches.install(
                moto_patches.PatchSettings(
                    endpoint=self.endpoint,
                    lambda_cache_dir=self.lambda_cache_dir or moto_patches.default_lambda_cache_dir(),
                    sagemaker=self.sagemaker,
                )
            )
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-aws", daemon=True
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
        self.reset()
        LOG.info("AWS emulator at port %s stopped", self._port)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------------

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

    # -- control -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every resource: moto's state, the SageMaker jobs' progress, Panorama's packages and instances."""
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        sagemaker_job_progress.TRACKER.reset()
        self.panorama.reset()

    def fail_sagemaker_jobs(self, job: str, reason: str | None = None) -> None:
        """Jobs whose name contains ``job`` end Failed (with ``reason``), like the control route."""
        sagemaker_job_progress.TRACKER.request_failure(job, reason)


# --------------------------------------------------------------------------------------------------
# python -m local_aws.emulator
# --------------------------------------------------------------------------------------------------


def _device_spec(text: str) -> str:
    """``--panorama-device``: a valid device spec (argparse reports a ValueError as a usage error)."""
    try:
        parse_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _numbered_devices(text: str) -> list[str]:
    """``--panorama-devices``: the specs ``N[,key=value...]`` stands for."""
    try:
        return parse_numbered(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a number of devices, at least 1; not {text!r}")
    return int(text)


def device_specs(named: Sequence[str], numbered: Sequence[str]) -> list[str]:
    """The devices of the command line: each ``--panorama-device``, then the ``--panorama-devices`` fleet.

    Neither given: :data:`_DEFAULT_DEVICE`.
    """
    return [*named, *numbered] or [_DEFAULT_DEVICE]


def appliance_devices(devices: Sequence[str], count: int) -> frozenset[str]:
    """The names of the first ``count`` devices (in the order given): those that run deployed applications."""
    return frozenset(record.name for record in list(device_records(devices).values())[:count])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_aws.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--state-file", type=Path, help="write endpoint and pid here once serving")
    parser.add_argument(
        "--panorama-device",
        action="append",
        default=[],
        type=_device_spec,
        metavar="NAME[,key=value...]",
        help="an appliance of the local Panorama service: a name or id:<device id>, then its tags (ListDevices "
        "and DescribeDevice report them; %%2C, %%3D, %%25 for a , = or %% inside one); repeatable; "
        f"default (with no --panorama-devices either) {_DEFAULT_DEVICE}",
    )
    parser.add_argument(
        "--panorama-devices",
        type=_numbered_devices,
        default=[],
        metavar="N[,key=value...]",
        help=f"also {NUMBERED_PREFIX}1 … {NUMBERED_PREFIX}N (N up to {MAX_LOCAL_DEVICES}), each with these tags",
    )
    parser.add_argument("--sagemaker-describes", type=int, default=SageMakerSettings.in_progress_describes)
    parser.add_argument("--sagemaker-seconds", type=float, default=SageMakerSettings.in_progress_seconds)
    parser.add_argument(
        "--sagemaker-training",
        choices=("run", "placeholder"),
        default="run",
        help="run: training jobs run their code in the ML environment (default; job folders in "
        ".panopipe/jobs/<job>/, log in training.log); placeholder: jobs write a placeholder model",
    )
    parser.add_argument("--fail-job", action="append", default=[], help="jobs whose name contains this fail")
    parser.add_argument(
        "--no-appliance",
        dest="appliance",
        action="store_false",
        help="devices do not run deployed applications (default: they do, see local_aws.appliance)",
    )
    parser.add_argument(
        "--appliance-devices",
        type=_positive,
        default=DEFAULT_APPLIANCE_DEVICES,
        metavar="K",
        help=f"only the first K devices (in the order given) run deployed applications, the others simulate a "
        f"healthy device (default {DEFAULT_APPLIANCE_DEVICES}: a running one costs about 160 MiB and 2 processes)",
    )
    parser.add_argument("--appliance-frames", type=Path, help="video file or image folder for every camera")
    parser.add_argument("--appliance-max-frames", type=int, default=ApplianceSettings.max_frames)
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; write and finally remove the state file."""
    parser = _parser()
    args = parser.parse_args(argv)
    devices = device_specs(args.panorama_device, args.panorama_devices)
    try:
        running = appliance_devices(devices, args.appliance_devices)
    except ValueError as error:  # e.g. one device given twice with different tags
        parser.error(str(error))
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
            run_training=args.sagemaker_training == "run",
            fail_jobs=set(args.fail_job),
        ),
        panorama=PanoramaBackend(
            region=args.region,
            devices=devices,
            appliance=ApplianceSettings(
                frames=args.appliance_frames, max_frames=args.appliance_max_frames, devices=running
            )
            if args.appliance
            else None,
        ),
    )
    emulator.start()
    state_file: Path | None = args.state_file.resolve() if args.state_file else None
    try:
        if state_file is not None:
            state = EmulatorState(emulator.endpoint, emulator.port, os.getpid(), args.region, time.time())
            write_state(state_file, state)
        print(f"local AWS emulator: {emulator.endpoint} (pid {os.getpid()})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        if state_file is not None:
            state_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local appliance: runs a deployed application instance's code in a process, as a device does.

When the local Panorama service deploys an instance (DEPLOYMENT_SUCCEEDED), the device starts the
application: the code package's ``/panorama/app.py`` with the real SDK. Here :class:`Appliance`
extracts the pinned code package version's asset (its ``panorama/`` files) into the instance's folder,
writes what the ``panoramasdk`` stand-in (``sdk/``) needs — parameter values of the graph with the
instance's overrides, a frame source per camera, the pinned model asset per model node, the ML
environment's Python for the model server — and starts ``app.py`` with the project venv's Python,
the emulator's endpoint and fake credentials (its metrics go to the local CloudWatch).

The instance's HealthStatus comes from that process: NOT_AVAILABLE until the application reads its
first frame, RUNNING while it runs, ERROR once it has exited (a crash, or any exit: an application
on a device runs until it is removed) with the end of its log as the reason. Removing or replacing the
instance stops the process (its whole process group: the model servers too), so does the emulator's
reset and shutdown; a process whose emulator is gone stops itself.

Only the devices named in :attr:`ApplianceSettings.devices` run applications (None: every device);
an instance on another device simulates a healthy one: it reports RUNNING once deployed, starts no
process, and its folder holds ``simulated.json`` instead of outputs. ``python -m local_aws.emulator``
(what ``panopipe local up`` starts) names its first :data:`DEFAULT_APPLIANCE_DEVICES` devices, the
config's named and id devices first, so a local fleet of hundreds of devices deploys for real through
the Panorama API while a few of them run the application.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local_aws.appliance.graph import GraphPlan
from panopipe.project import ROOT

LOG = logging.getLogger("local_aws.appliance")
SDK_DIR = Path(__file__).resolve().parent / "sdk"
MODEL_SERVER = Path(__file__).resolve().parent / "model_server.py"
DEFAULT_OUTPUT = ROOT / ".panopipe" / "appliance"
_CODE_PREFIX = "panorama/"
_LOG_TAIL = 400

NOT_AVAILABLE, RUNNING, ERROR = "NOT_AVAILABLE", "RUNNING", "ERROR"
#: In the folder of an instance whose device simulates a healthy one (no application runs there).
SIMULATED = "simulated.json"
#: Devices of ``python -m local_aws.emulator`` that run deployed applications (``--appliance-devices``).
#: Measured here (2 shared cores, 24 GiB, the sample's 640x480 frames, the ``make local`` model: a
#: 20-layer ResNet on 28x28 input): a running device is 2 processes (``app.py`` and its MXNet model
#: server) with 13 threads, 263 MiB resident (about 160 MiB proportional, the libraries being shared
#: between devices), 2.7-3.1 CPU seconds from start to its 100 frames written, then about 0 % CPU once
#: its cameras are quiet; 8 devices: 1.3 GiB proportional, 16 processes, 104 threads, 22 CPU seconds,
#: all written within 18 s (first frames at 11 s). 200 running devices would take about 30 GiB, 400
#: processes, 2,600 threads and 9 CPU minutes (4.5 minutes of both cores) at every deployment: more
#: than a 2-core, 24 GiB machine has. Eight keep the cost near 1.3 GiB and 20 s of both cores: 200
#: devices deployed at once (8 running, 192 simulated) were all RUNNING 24 s after the first create,
#: the emulator and its applications then 17 processes, 111 threads and 1.5 GiB proportional.
DEFAULT_APPLIANCE_DEVICES = 8
_SAMPLE_LOCK = threading.Lock()
_SAMPLE_DONE = ".complete"


def _sample_frames(folder: Path, count: int) -> Path:
    """The sample's camera frames (``panopipe.samples.generate``), written once into ``folder``."""
    from panopipe.samples.generate import camera_frames

    with _SAMPLE_LOCK:  # two devices starting at once must not read a half-written folder
        if not (folder / _SAMPLE_DONE).exists():
            camera_frames(folder, count)
            (folder / _SAMPLE_DONE).write_text(f"{count}\n")
    return folder


@dataclass(frozen=True)
class ApplianceSettings:
    """What the local appliance feeds an application, and where its outputs go.

    ``frames``: a video file or an image folder for every camera (None: the sample's generated frames);
    ``cameras``: per camera node name, overriding ``frames``; ``max_frames``: frames per camera before
    the cameras go quiet (the outputs are written then); ``output``: the folder of
    ``<device name>/<instance id>/``; ``ml_python``: the model server's Python (None: the ML
    environment, made on first use); ``devices``: the names of the devices that run applications
    (None: every device; the others simulate a healthy device).
    """

    frames: Path | None = None
    cameras: Mapping[str, Path] = field(default_factory=dict)
    max_frames: int = 100
    output: Path = DEFAULT_OUTPUT
    ml_python: Path | None = None
    sample_frames: Callable[[Path, int], Path] = _sample_frames
    devices: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ValueError("max_frames must be at least 1")


@dataclass(frozen=True)
class Deployment:
    """An instance the device must run: its graph's plan and the assets of its pinned package versions."""

    instance_id: str
    device_name: str
    plan: GraphPlan
    code_asset: bytes
    model_assets: Mapping[str, bytes]  # model node -> model asset (model.tar.gz)
    endpoint: str | None  # the emulator's AWS_ENDPOINT_URL (None: no emulator; metrics calls then fail)
    region: str


class _Running:
    """One instance on the device: its folder, and its process once started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.failure: str | None = None  # could not start
        self.stopped = False
        self.simulated = False  # a device that does not run applications: healthy, no process


class Appliance:
    """Starts, watches and stops the applications of the local Panorama service's devices."""

    def __init__(self, settings: ApplianceSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        LOG.info(
            "local appliance on: devices run deployed applications (%s, %d frames per camera); outputs in %s",
            f"frames from {settings.frames}" if settings.frames else "the sample's camera frames",
            settings.max_frames,
            settings.output / "<device>" / "<application instance id>",
        )
        if settings.devices is not None:
            LOG.info(
                "local appliance: applications run on %s; the other devices simulate a healthy device",
                _names(settings.devices),
            )

    def folder(self, device_name: str, instance_id: str) -> Path:
        """Where an instance's code, log and HDMI output go."""
        return self.settings.output / device_name / instance_id

    def runs_applications(self, device_name: str) -> bool:
        """Whether the device runs deployed applications (else it simulates a healthy device)."""
        return self.settings.devices is None or device_name in self.settings.devices

    def start(self, deployment: Deployment) -> Path:
        """Start the instance's application (in the background: the ML environment may be made first).

        On a device that does not run applications, the instance is healthy at once and its folder
        holds :data:`SIMULATED` only.
        """
        folder = self.folder(deployment.device_name, deployment.instance_id)
        running = _Running(folder)
        if not self.runs_applications(deployment.device_name):
            running.simulated = True
            folder.mkdir(parents=True, exist_ok=True)
            reason = (
                f"this device simulates a healthy one: only {_names(self.settings.devices or frozenset())} run "
                "the application (python -m local_aws.emulator --appliance-devices)"
            )
            document = {"device": deployment.device_name, "instance": deployment.instance_id, "reason": reason}
            (folder / SIMULATED).write_text(json.dumps(document, indent=1) + "\n")
            with self._lock:
                self._running[deployment.instance_id] = running
            LOG.debug("local appliance: device %s simulates instance %s", deployment.device_name, folder.name)
            return folder
        with self._lock:
            self._running[deployment.instance_id] = running
        threading.Thread(
            target=self._launch, args=(deployment, running), name=f"appliance-{deployment.instance_id}", daemon=True
        ).start()
        LOG.info(
            "local appliance: device %s starts application instance %s (cameras %s); HDMI output, counts and "
            "the application's log in %s",
            deployment.device_name,
            deployment.instance_id,
            ", ".join(deployment.plan.cameras),
            folder,
        )
        return folder

    def _launch(self, deployment: Deployment, running: _Running) -> None:
        try:
            command, env = self._prepare(deployment, running.folder)
            with self._lock:
                if running.stopped:
                    return
                with open(running.folder / "app.log", "ab") as log:
                    running.process = subprocess.Popen(
                        command,
                        cwd=running.folder / "panorama",
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # a process group: stopping it stops the model servers too
                    )
        except Exception as error:
            LOG.warning("local appliance: instance %s could not start: %s", deployment.instance_id, error)
            running.failure = f"the application could not start: {error}"

    def _prepare(self, deployment: Deployment, folder: Path) -> tuple[list[str], dict[str, str]]:
        """Extract the code and models, choose the cameras' frames, write the SDK stand-in's config."""
        folder.mkdir(parents=True, exist_ok=True)
        entry = _extract_code(deployment.code_asset, folder)
        models = {}
        for node, asset in deployment.model_assets.items():
            path = folder / "models" / f"{node}.tar.gz"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(asset)
            models[node] = str(path)
        settings = self.settings
        cameras = []
        for camera in deployment.plan.cameras:
            source = settings.cameras.get(camera) or settings.frames
            if source is None:
                source = settings.sample_frames(settings.output / "sample-frames", settings.max_frames)
            cameras.append({"name": camera, "source": str(Path(source).resolve())})
        ml_python = settings.ml_python
        if ml_python is None:
            from local_aws.ml import environment

            ml_python = environment.ensure(lambda text: LOG.info("local appliance: %s", text))
        config = {
            "instance": deployment.instance_id,
            "parameters": deployment.plan.parameters,
            "cameras": cameras,
            "video_input": deployment.plan.video_input,
            "video_outputs": list(deployment.plan.video_outputs),
            "models": models,
            "model_python": str(ml_python),
            "model_server": str(MODEL_SERVER),
            "output": str(folder),
            "max_frames": settings.max_frames,
            "parent_pid": os.getpid(),
        }
        (folder / "appliance.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONPATH"}
        if deployment.endpoint is not None:
            from local_aws.emulator_process import client_env

            env.update(client_env(deployment.endpoint, deployment.region))
        env.update(
            {
                "PYTHONPATH": str(SDK_DIR),
                "PYTHONUNBUFFERED": "1",
                "PANOPIPE_APPLIANCE_CONFIG": str(folder / "appliance.json"),
            }
        )
        return [sys.executable, str(entry)], env

    def health(self, instance_id: str) -> tuple[str, str | None]:
        """(HealthStatus, reason of an ERROR) of the instance's application."""
        with self._lock:
            running = self._running.get(instance_id)
        if running is None:
            return NOT_AVAILABLE, None
        if running.simulated:
            return RUNNING, None
        if running.failure is not None:
            return ERROR, running.failure
        process = running.process
        if process is None:
            return NOT_AVAILABLE, None
        code = process.poll()
        if code is not None:
            return ERROR, f"the application exited with code {code}: {_log_tail(running.folder / 'app.log')}"
        return (RUNNING, None) if (running.folder / "status.json").exists() else (NOT_AVAILABLE, None)

    def stop(self, instance_id: str) -> None:
        """Stop the instance's application and its model servers (unknown or stopped: nothing)."""
        with self._lock:
            running = self._running.pop(instance_id, None)
            if running is None:
                return
            running.stopped = True
            process = running.process
        if process is not None and process.poll() is None:
            _stop_group(process)
            LOG.info("local appliance: application instance %s stopped", instance_id)

    def stop_all(self) -> None:
        """Stop every application (emulator reset and shutdown)."""
        with self._lock:
            instances = list(self._running)
        for instance_id in instances:
            self.stop(instance_id)


def _names(devices: frozenset[str], shown: int = 8) -> str:
    """Device names in natural order (``local-device-2`` before ``local-device-10``), the first ``shown``."""
    ordered = sorted(devices, key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)])
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return (", ".join(ordered[:shown]) or "no device") + more


def _stop_group(process: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue


def _extract_code(asset: bytes, folder: Path) -> Path:
    """Extract the asset's ``panorama/`` files into ``folder``; return ``panorama/app.py``."""
    with tarfile.open(fileobj=io.BytesIO(asset), mode="r:*") as archive:
        members = [m for m in archive.getmembers() if m.name.removeprefix("./").lstrip("/").startswith(_CODE_PREFIX)]
        for member in members:
            member.name = member.name.removeprefix("./").lstrip("/")
        archive.extractall(folder, members=members, filter="data")
    entry = folder / "panorama" / "app.py"
    if not entry.is_file():
        raise FileNotFoundError("the code asset holds no panorama/app.py")
    return entry


def _log_tail(path: Path) -> str:
    """The last meaningful line of the application's log (a traceback's last line names the error)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    return lines[-1][-_LOG_TAIL:] if lines else "no output"

"""Training jobs that really run: the job's code in a subprocess with the SageMaker container contract.

With ``SageMakerSettings.run_training`` (the emulator's command line turns it on; in-process tests
keep the placeholder jobs of ``sagemaker_job_progress``), CreateTrainingJob starts a
:class:`ContainerJob`: a job folder ``<jobs dir>/<job name>/`` stands for ``/opt/ml`` —

- ``input/data/<channel>/``: the channel's S3 objects (S3Prefix: the keys under the prefix, relative
  to it; ManifestFile: the manifest's keys), read from the emulator's own S3;
- ``input/config/hyperparameters.json`` (all strings), ``inputdataconfig.json``, ``resourceconfig.json``;
- ``model/`` (tarred to ``<S3OutputPath>/<job>/output/model.tar.gz`` when the job ends well),
  ``output/data/`` (``output.tar.gz`` beside it, if not empty), ``output/failure``;
- ``code/``: script mode's ``sagemaker_submit_directory`` archive, unpacked;
- ``training.log``: the job's stdout and stderr, also put into the local CloudWatch Logs when the job
  ends (group ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<start time>``, as SageMaker
  names them; SageMaker streams them live).

The process runs in the ML environment (``local_aws.ml.environment``) with the environment variables
the SageMaker training toolkit sets (``SM_MODEL_DIR``, ``SM_CHANNEL_<NAME>``, ``SM_HPS``, ...) and
the emulator's endpoint as its AWS. What it runs depends on the job's image, as on SageMaker: the
built-in ``image-classification`` image runs the local stand-in
(``local_aws.ml.builtin_image_classification``); an ``mxnet-training`` framework image runs the
user's ``sagemaker_program`` with the hyperparameters as ``--name value`` arguments. Any other image,
a Pipe-mode channel, a channel without objects, or a source directory with a ``requirements.txt``
(the local AWS installs nothing) fails the job with the reason; it is never run as something else.

The job's final metrics are read from its log with its MetricDefinitions (the built-in algorithm's
own for ``image-classification``: :data:`BUILTIN_METRIC_DEFINITIONS`), the last match of each.
A job that exits non-zero fails with ``output/failure`` or the log's last lines as FailureReason;
StopTrainingJob terminates it; one running past ``MaxRuntimeInSeconds`` is stopped.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

LOG = logging.getLogger(__name__)

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
#: The built-in image-classification algorithm's metric definitions (it defines its own; a job sends
#: none): its log's ``Epoch[N] Train-accuracy=`` / ``Validation-accuracy=`` lines. The names are
#: those ``panopipe.config.training_schema.BUILTIN_METRICS`` documents.
BUILTIN_METRIC_DEFINITIONS: dict[str, list[dict[str, str]]] = {
    "image-classification": [
        {"Name": "train:accuracy", "Regex": rf"Epoch\[\d+\] Train-accuracy={_NUMBER}"},
        {"Name": "validation:accuracy", "Regex": rf"Epoch\[\d+\] Validation-accuracy={_NUMBER}"},
        {"Name": "train:accuracy:epoch", "Regex": rf"Epoch\[\d+\] Train-accuracy={_NUMBER}"},
        {"Name": "validation:accuracy:epoch", "Regex": rf"Epoch\[\d+\] Validation-accuracy={_NUMBER}"},
    ]
}
#: Framework images whose script mode runs here (the ML environment has their framework).
SCRIPT_IMAGES = ("mxnet-training",)
#: Where SageMaker writes training jobs' logs.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: FailureReason's maximum length (the API's).
_REASON_LIMIT = 1024
_HOST = "algo-1"


class JobSetupError(RuntimeError):
    """The job cannot start (its message is the FailureReason, e.g. ``ClientError: ...``)."""


def image_repository(image: str) -> str:
    """``image-classification`` of ``<registry>/image-classification:1`` (tag or digest dropped)."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


def metric_definitions(algorithm: Mapping[str, Any]) -> list[dict[str, str]]:
    """The job's MetricDefinitions, or its built-in algorithm's own (none for other images)."""
    defined = algorithm.get("MetricDefinitions")
    if defined:
        return [{"Name": str(d["Name"]), "Regex": str(d["Regex"])} for d in defined]
    return list(BUILTIN_METRIC_DEFINITIONS.get(image_repository(str(algorithm.get("TrainingImage", ""))), []))


def parse_metrics(log: str, definitions: list[dict[str, str]]) -> dict[str, float]:
    """The last value each definition's regex (its first group) matches in ``log``; unmatched ones are absent."""
    values: dict[str, float] = {}
    for definition in definitions:
        try:
            pattern = re.compile(definition["Regex"])
        except re.error:
            continue
        for match in pattern.finditer(log):
            try:
                values[definition["Name"]] = float(match.group(1))
            except (IndexError, TypeError, ValueError):
                continue
    return values


def tar_gz(folder: Path) -> bytes:
    """The folder's files as a tar.gz, paths relative to it (what SageMaker uploads as model.tar.gz)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = archive.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(path, "rb") as data:
                    archive.addfile(info, data)
    return gzip.compress(raw.getvalue(), mtime=0)


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _trim(reason: str) -> str:
    return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."


def _hyperparameter_value(text: str) -> Any:
    """What the training toolkit makes of a hyperparameter string for SM_HPS (JSON if it parses)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# --------------------------------------------------------------------------------------------------
# Reading the emulator's S3
# --------------------------------------------------------------------------------------------------

#: (account, region, uri) -> the object's bytes or None.
Reader = Callable[[str, str, str], bytes | None]
#: (account, region, bucket, prefix) -> the keys under the prefix.
Lister = Callable[[str, str, str, str], list[str]]


def moto_keys(account_id: str, region: str, bucket: str, prefix: str) -> list[str]:
    """The keys under ``prefix`` in moto's S3 bucket as ListObjects sees them (no deleted ones).

    Raises when there is no such bucket.
    """
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    backend = s3_backends[account_id][get_partition(region)]
    found, _, _, _ = backend.list_objects(backend.get_bucket(bucket), prefix, None, None, None)
    return sorted(str(key.name) for key in found)


def _moto_read(account_id: str, region: str, uri: str) -> bytes | None:
    from local_aws.sagemaker_job_artifacts import s3_read

    return s3_read(account_id, region, uri)


# --------------------------------------------------------------------------------------------------
# One job
# --------------------------------------------------------------------------------------------------


@dataclass
class ContainerJob:
    """One training job's folder and process. :meth:`start` returns at once; the job runs in a thread."""

    name: str
    root: Path
    account_id: str
    region: str
    request: dict[str, Any]  # CreateTrainingJob's parameters as moto names them (snake_case keys)
    endpoint: str | None = None
    python: Path | None = None  # None: the ML environment's (created on first use)
    read: Reader = _moto_read
    keys: Lister = moto_keys
    returncode: int | None = None
    setup_error: str | None = None
    timed_out: bool = False
    command: list[str] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: int = field(default_factory=lambda: int(time.time()))

    @property
    def log_path(self) -> Path:
        """Where the job's output goes."""
        return self.root / "training.log"

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> ContainerJob:
        """Prepare the folder and run the job in a background thread."""
        threading.Thread(target=self._run, name=f"training-{self.name}", daemon=True).start()
        return self

    @property
    def phase(self) -> str:
        """SageMaker's SecondaryStatus while running: Downloading until the process starts, then Training."""
        return "Training" if self._process is not None else "Downloading"

    def finished(self) -> bool:
        """Whether the job has ended (exited, failed to start, or was stopped)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended; False on timeout."""
        return self._done.wait(timeout)

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the job's process group (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)

    def _run(self) -> None:
        try:
            self._prepare()
            python = self.python or _ml_python()
            self.command, cwd, env = self._invocation(python)
            with open(self.log_path, "ab") as log, self._lock:
                if self._stop.is_set():
                    self.setup_error = "Stopped before the job's process started"
                    return
                self._process = subprocess.Popen(
                    self.command,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            LOG.info("training job %s: running %s (log: %s)", self.name, " ".join(self.command), self.log_path)
            limit = (self.request.get("stopping_condition") or {}).get("MaxRuntimeInSeconds")
            try:
                self.returncode = self._process.wait(float(limit) if limit else None)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.stop()
                self.returncode = self._process.wait()
            LOG.info("training job %s: exit code %s (log: %s)", self.name, self.returncode, self.log_path)
        except JobSetupError as error:
            self.setup_error = str(error)
            LOG.info("training job %s cannot run: %s", self.name, error)
        except Exception as error:  # the emulator's own failure: the job fails, saying so
            LOG.exception("training job %s could not run", self.name)
            self.setup_error = f"InternalServerError: the local AWS could not run the job: {error}"
        finally:
            self._publish_log()
            self._done.set()

    def _publish_log(self) -> None:
        """The job's log into the local CloudWatch Logs, where SageMaker writes it (best effort)."""
        lines = [line for line in self.log().splitlines() if line.strip()] or ["(no output)"]
        try:
            from moto.logs.models import logs_backends

            backend = logs_backends[self.account_id][self.region]
            if LOG_GROUP not in backend.groups:
                backend.create_log_group(LOG_GROUP, {})
            stream = f"{self.name}/{_HOST}-{self._started}"
            backend.create_log_stream(LOG_GROUP, stream)
            now = int(time.time() * 1000)
            backend.put_log_events(LOG_GROUP, stream, [{"timestamp": now, "message": line} for line in lines])
        except Exception:  # the job's result does not depend on its logs
            LOG.warning("training job %s: could not write its log to CloudWatch Logs", self.name, exc_info=True)

    # -- the folder --------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Write the job folder: channels, configuration, code (raises JobSetupError)."""
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in ("input/config", "input/data", "model", "output/data", "output/intermediate"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        algorithm = self.request.get("algorithm_specification") or {}
        self._runnable(algorithm)
        default_mode = algorithm.get("TrainingInputMode", "File")
        channels: dict[str, Any] = {}
        for channel in self.request.get("input_data_config") or []:
            name = str(channel["ChannelName"])
            mode = channel.get("InputMode") or default_mode
            if mode != "File":
                raise JobSetupError(f"ClientError: Channel {name}: the local AWS runs File input mode only, not {mode}")
            self._download(name, (channel.get("DataSource") or {}).get("S3DataSource") or {})
            channels[name] = {
                "TrainingInputMode": mode,
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
            if channel.get("ContentType"):
                channels[name]["ContentType"] = channel["ContentType"]
        config = self.root / "input" / "config"
        hyperparameters = {str(k): str(v) for k, v in (self.request.get("hyper_parameters") or {}).items()}
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
        (config / "inputdataconfig.json").write_text(json.dumps(channels, indent=1))
        (config / "resourceconfig.json").write_text(json.dumps(self._resource_config(), indent=1))
        if "sagemaker_submit_directory" in hyperparameters:
            self._unpack_code(hyperparameters["sagemaker_submit_directory"])

    def _runnable(self, algorithm: Mapping[str, Any]) -> None:
        image = str(algorithm.get("TrainingImage", ""))
        repository = image_repository(image)
        if repository in BUILTIN_METRIC_DEFINITIONS:
            return
        if repository in SCRIPT_IMAGES:
            if "sagemaker_program" not in (self.request.get("hyper_parameters") or {}):
                raise JobSetupError(
                    f"ClientError: the framework image {image} needs the sagemaker_program hyperparameter"
                )
            return
        raise JobSetupError(
            f"ClientError: the local AWS cannot run the training image {image}: it runs the built-in "
            f"image-classification algorithm and script mode in {', '.join(SCRIPT_IMAGES)} images"
        )

    def _download(self, channel: str, source: Mapping[str, Any]) -> None:
        uri, kind = str(source.get("S3Uri", "")), source.get("S3DataType", "S3Prefix")
        target = self.root / "input" / "data" / channel
        target.mkdir(parents=True, exist_ok=True)
        location = urlparse(uri)
        pairs: list[tuple[str, str]]
        if kind == "S3Prefix":
            prefix = location.path.lstrip("/")
            try:
                keys = self.keys(self.account_id, self.region, location.netloc, prefix)
            except Exception:  # no such bucket: no objects
                keys = []
            pairs = [(f"s3://{location.netloc}/{key}", key[len(prefix) :].lstrip("/")) for key in keys]
            pairs = [(object_uri, relative) for object_uri, relative in pairs if relative]
        elif kind == "ManifestFile":
            body = self.read(self.account_id, self.region, uri)
            try:
                manifest = json.loads(body or b"")
                base, relative_keys = str(manifest[0]["prefix"]), [str(key) for key in manifest[1:]]
            except (ValueError, KeyError, IndexError, TypeError):
                raise JobSetupError(
                    f"ClientError: Channel {channel}: the ManifestFile {uri} is not a manifest of keys"
                ) from None
            pairs = [(base + key, key) for key in relative_keys]
        else:
            raise JobSetupError(f"ClientError: Channel {channel}: S3DataType {kind} is not supported in File mode")
        for object_uri, relative_path in pairs:
            body = self.read(self.account_id, self.region, object_uri)
            if body is None:
                raise JobSetupError(f"ClientError: Channel {channel}: unable to download {object_uri}: no such object")
            path = (target / relative_path).resolve()
            if not path.is_relative_to(target.resolve()):
                raise JobSetupError(f"ClientError: Channel {channel}: the key {object_uri} leaves the channel")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        if not pairs:
            raise JobSetupError(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please '
                "ensure that the bucket exists in the selected region, that objects exist under that S3 "
                "prefix, and that the role has s3:ListBucket permissions on the bucket"
            )

    def _unpack_code(self, uri: str) -> None:
        body = self.read(self.account_id, self.region, uri)
        if body is None:
            raise JobSetupError(f"ClientError: unable to download sagemaker_submit_directory {uri}: no such object")
        code = self.root / "code"
        code.mkdir(exist_ok=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
                archive.extractall(code, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise JobSetupError(
                f"ClientError: sagemaker_submit_directory {uri} is not a tar archive: {error}"
            ) from None
        if (code / "requirements.txt").exists():
            raise JobSetupError(
                "ClientError: the source directory has a requirements.txt; the local AWS installs no packages "
                "(the ML environment has mxnet, numpy and pillow: local_aws/ml/requirements.txt)"
            )

    def _resource_config(self) -> dict[str, Any]:
        instance = str((self.request.get("resource_config") or {}).get("InstanceType", "local"))
        group = {"instance_group_name": "homogeneousCluster", "instance_type": instance, "hosts": [_HOST]}
        return {
            "current_host": _HOST,
            "current_instance_type": instance,
            "current_group_name": "homogeneousCluster",
            "hosts": [_HOST],
            "instance_groups": [group],
            "network_interface_name": "eth0",
        }

    # -- the process -------------------------------------------------------------------------------

    def _invocation(self, python: Path) -> tuple[list[str], Path, dict[str, str]]:
        """(command, working directory, environment) of the job's process."""
        from panopipe.project import ROOT

        hyperparameters = json.loads((self.root / "input" / "config" / "hyperparameters.json").read_text())
        user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        env = self._environment(python, user)
        program = hyperparameters.get("sagemaker_program")
        if program is None:  # the built-in algorithm's stand-in
            env["PYTHONPATH"] = str(ROOT)
            return [str(python), "-m", "local_aws.ml.builtin_image_classification", str(self.root)], self.root, env
        code = self.root / "code"
        entry = (code / program).resolve()
        if not entry.is_relative_to(code.resolve()) or not entry.is_file():
            raise JobSetupError(f"ClientError: sagemaker_program {program} is not a file of the source directory")
        arguments = [item for key, value in user.items() for item in (f"--{key}", str(value))]
        env |= {"PYTHONPATH": str(code), "SM_USER_ENTRY_POINT": program, "SM_USER_ARGS": json.dumps(arguments)}
        env["SM_MODULE_NAME"] = Path(program).stem
        env["SM_MODULE_DIR"] = str(hyperparameters.get("sagemaker_submit_directory", ""))
        return [str(python), str(entry), *arguments], code, env

    def _environment(self, python: Path, user: dict[str, str]) -> dict[str, str]:
        """The container's variables: a clean base, the emulator as AWS, the training toolkit's SM_*."""
        from local_aws.emulator_process import client_env

        root = self.root
        channels = json.loads((root / "input" / "config" / "inputdataconfig.json").read_text())
        cpus = os.cpu_count() or 1
        env = {
            "PATH": os.pathsep.join([str(python.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "TRAINING_JOB_NAME": self.name,
            "SM_HOSTS": json.dumps([_HOST]),
            "SM_CURRENT_HOST": _HOST,
            "SM_NUM_CPUS": str(cpus),
            "SM_NUM_GPUS": "0",
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_LOG_LEVEL": "20",
            "SM_MODEL_DIR": str(root / "model"),
            "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
            "SM_OUTPUT_DIR": str(root / "output"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(root / "output" / "intermediate"),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps({k: _hyperparameter_value(v) for k, v in user.items()}),
            "SM_INPUT_DATA_CONFIG": json.dumps(channels),
            "SM_RESOURCE_CONFIG": json.dumps(self._resource_config()),
        }  # no OMP_NUM_THREADS: set to the core count, MXNet's threads spin against a busy machine (2x slower)
        if sys.platform == "darwin":
            env["OBJC_DISABLE_INITIALIZE_FORK_SAFETY"] = "YES"
        for channel in channels:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(root / "input" / "data" / channel)
        for key, value in user.items():
            env[f"SM_HP_{key.upper()}"] = value
        if self.endpoint:
            env |= client_env(self.endpoint, self.region)
        return env

    # -- the result --------------------------------------------------------------------------------

    def log(self) -> str:
        """The job's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def failure_reason(self) -> str | None:
        """Why the job failed (None: it exited 0). ``output/failure`` first, as SageMaker reads it."""
        if self.setup_error is not None:
            return _trim(self.setup_error)
        if self.returncode == 0:
            return None
        failure = self.root / "output" / "failure"
        if failure.is_file() and failure.read_text(errors="replace").strip():
            return _trim(failure.read_text(errors="replace").strip())
        tail = _tail(self.log())
        if "sagemaker_program" in (self.request.get("hyper_parameters") or {}):
            command = " ".join(self.command[1:]) if self.command else ""
            return _trim(
                f'AlgorithmError: ExecuteUserScriptError:\nExitCode {self.returncode}\nErrorMessage "{tail}"\n'
                f'Command "{command}", exit code: {self.returncode}'
            )
        return _trim(f"AlgorithmError: exit code {self.returncode}: {tail}")

    def metrics(self, definitions: list[dict[str, str]]) -> dict[str, float]:
        """The final metrics: the last value of each definition in the job's log."""
        return parse_metrics(self.log(), definitions)

    def model_artifact(self) -> bytes:
        """model.tar.gz: the model directory's files."""
        return tar_gz(self.root / "model")

    def output_artifact(self) -> bytes | None:
        """output.tar.gz of ``output/data``, or None when the job wrote nothing there."""
        data = self.root / "output" / "data"
        return tar_gz(data) if any(path.is_file() for path in data.rglob("*")) else None


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _ml_python() -> Path:
    """The ML environment's python (created on first use, which the emulator log says)."""
    from local_aws.ml import environment

    return environment.ensure(say=LOG.info)


def jobs_dir() -> Path:
    """Where job folders go by default: ``.panopipe/jobs`` of the project (or $PANOPIPE_JOBS_DIR)."""
    from panopipe.project import ROOT

    return Path(os.environ.get("PANOPIPE_JOBS_DIR") or ROOT / ".panopipe" / "jobs")

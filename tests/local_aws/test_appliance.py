"""The local appliance: deployed applications run for real, with the ``panoramasdk`` stand-in.

Fast tests read the graph, the HDMI count line and run the real application (``panorama_app``,
as ``panopipe package-app`` packs it) against the SDK stand-in with a stand-in model server (numpy
only). The ``appliance`` tests start the real model server in the ML environment (mxnet) and the
emulator: a deployed instance runs, sends metrics to the local CloudWatch and writes its HDMI output;
a broken code version deploys and then reports HealthStatus ERROR; redeploying the previous graph
restores a RUNNING application; replacing or removing an instance stops its process.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import cv2
import numpy as np
import pytest

from lambda_handlers import deployment, fleet, rollback, settings, validate_input
from lambda_handlers import package_registration as reg
from lambda_handlers.artifacts import last_good_key, read_json
from lambda_handlers.aws import clients, panorama
from lambda_handlers.settings import install
from lambda_handlers.state import RunState
from local_aws.appliance import Appliance, ApplianceSettings, Deployment, runner
from local_aws.appliance.graph import plan
from local_aws.appliance.outputs import folder_of, summary, wait_for_outputs
from local_aws.appliance.sdk._panopipe_hdmi import counts_of
from local_aws.emulator import Emulator
from local_aws.emulator_process import control
from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_records import device_id_for_name
from panopipe import code_package
from panopipe.config import load_config
from panopipe.config.panorama_spec import application_spec
from panorama_app.manifest import documents, validation
from tests.conftest import ROOT
from tests.handlers.conftest import make_settings

ACCOUNT, REGION = "123456789012", "us-east-1"
DEVICE_NAME = "local-device-1"
DEVICE_ID = device_id_for_name(DEVICE_NAME)
SPEC = application_spec(load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT))
FRAMES = 12

#: A model server that answers every request with fixed class probabilities (no mxnet needed).
FAKE_MODEL_SERVER = """
import sys
sys.path.insert(0, {appliance!r})
import numpy as np
import model_server
from model_server import pack_arrays, read_message, unpack_arrays, write_message  # the protocol, for the SDK

class Fixed:
    input_names = ["data"]

    def __init__(self, folder):
        pass

    def __call__(self, inputs):
        assert inputs["data"].shape == (1, 3, 28, 28), inputs["data"].shape
        return [np.array([[0.1, 0.9]], np.float32)]

if __name__ == "__main__":
    model_server.Model = Fixed
    sys.exit(model_server.main())
"""

#: A small MXNet classifier of the built-in algorithm's artifact layout, made in the ML environment.
TINY_MODEL = """
import sys, mxnet as mx
data = mx.sym.Variable("data")
x = mx.sym.Convolution(data, kernel=(3, 3), stride=(2, 2), num_filter=8, name="conv0")
x = mx.sym.Pooling(mx.sym.Activation(x, act_type="relu"), global_pool=True, pool_type="avg", kernel=(1, 1))
x = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=2, name="fc1")
module = mx.mod.Module(mx.sym.SoftmaxOutput(x, name="softmax"), label_names=["softmax_label"])
module.bind(data_shapes=[("data", (1, 3, 224, 224))], label_shapes=[("softmax_label", (1,))])
mx.random.seed(0)
module.init_params(mx.init.Xavier())
module.save_checkpoint(sys.argv[1] + "/image-classification", 0)
"""


def _frames(folder: Path, count: int = 6) -> Path:
    """Camera frames: a bright figure on a dark background, moving."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.full((360, 640, 3), 40, np.uint8)
        cv2.rectangle(image, (60 + 60 * i, 80), (140 + 60 * i, 300), (200, 180, 160), -1)
        cv2.imwrite(str(folder / f"frame-{i:03d}.png"), image)
    return folder


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(body)
            archive.addfile(member, io.BytesIO(body))
    return buffer.getvalue()


def _code_asset(folder: Path, entry: str | None = None) -> code_package.BuiltAsset:
    """The code package's asset as ``panopipe package-app`` builds it locally; ``entry`` replaces app.py."""
    context = ROOT
    if entry is not None:
        context = folder / "context"
        shutil.copytree(ROOT / "panorama_app", context / "panorama_app", ignore=shutil.ignore_patterns("__pycache__"))
        (context / "panorama_app" / "device_entry.py").write_text(entry)
    return code_package.build(code_package.LocalBuilder(), context, folder / "asset")


def _graph(**patches: str) -> dict[str, Any]:
    return documents.graph(SPEC, ACCOUNT, values={"device_id": DEVICE_ID, "region": REGION}, patch_versions=patches)


def _wait(condition: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


# --- the graph, the HDMI count line --------------------------------------------------------------


def test_the_plan_reads_parameters_with_overrides_cameras_and_model_nodes() -> None:
    graph = _graph()
    overrides = documents.camera_overrides(SPEC, ACCOUNT, graph)
    overrides["nodeGraphOverrides"]["nodes"].append({"name": "strict", "interface": "float32", "value": 0.8})
    overrides["nodeGraphOverrides"]["nodeOverrides"].append({"replace": "threshold", "with": [{"name": "strict"}]})
    planned = plan(graph, overrides, {SPEC.code_package})
    assert planned.code_node == "code_node" and planned.code_package == SPEC.code_package
    assert planned.cameras == tuple(SPEC.cameras)
    assert (planned.video_input, planned.video_outputs) == ("video_in", ("video_out",))
    assert planned.models == {"model_node": SPEC.model_package}
    assert planned.parameters["threshold"] == 0.8  # the override's value
    assert planned.parameters["device_id"] == DEVICE_ID and planned.parameters["metrics_interval"] == 60.0
    assert planned.parameters["input_shape"] == "1,3,28,28"
    with pytest.raises(ValueError, match="one code node"):
        plan(graph, overrides, set())


def test_counts_are_read_from_the_count_line_the_application_shows() -> None:
    shown = [("person 91%", 0.02, 0.1), ("empty: 0, person: 1", 0.02, 0.04)]
    assert counts_of(shown) == {"empty": 0, "person": 1}
    assert counts_of([("person 91%", 0.02, 0.1)]) is None


def test_the_appliance_is_off_unless_configured() -> None:
    assert PanoramaBackend(devices=[DEVICE_NAME]).appliance is None
    assert PanoramaBackend(devices=[DEVICE_NAME], appliance=ApplianceSettings()).appliance is not None
    with pytest.raises(ValueError, match="max_frames"):
        ApplianceSettings(max_frames=0)


# --- the real application against the SDK stand-in ------------------------------------------------


@pytest.fixture(scope="module")
def good_code(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _code_asset(tmp_path_factory.mktemp("good")).path.read_bytes()


@pytest.fixture(scope="module")
def broken_code(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    entry = "import panoramasdk\n\nraise KeyError('data')  # a broken version of the application\n"
    return _code_asset(tmp_path_factory.mktemp("broken"), entry).path.read_bytes()


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    server = tmp_path / "fake_model_server.py"
    server.write_text(FAKE_MODEL_SERVER.format(appliance=str(runner.MODEL_SERVER.parent)))
    monkeypatch.setattr(runner, "MODEL_SERVER", server)
    return _tar_gz({"placeholder": b"the fake server loads nothing"})


def _deployment(instance_id: str, code: bytes, model: bytes) -> Deployment:
    graph = _graph()
    planned = plan(graph, documents.camera_overrides(SPEC, ACCOUNT, graph), {SPEC.code_package})
    return Deployment(instance_id, DEVICE_NAME, planned, code, {"model_node": model}, None, REGION)


def test_the_real_application_runs_on_the_sdk_stand_in(tmp_path: Path, good_code: bytes, fake_model: bytes) -> None:
    """Frames in; annotated frames, counts and timings out; RUNNING while it runs; stopped on request."""
    # no frames given: the sample's camera frames (panopipe.samples.generate), made once per output folder
    settings = ApplianceSettings(max_frames=FRAMES, output=tmp_path / "out", ml_python=Path(sys.executable))
    appliance = Appliance(settings)
    folder = appliance.start(_deployment("applicationInstance-a", good_code, fake_model))
    try:
        _wait(lambda: (folder / "counts.json").exists() or appliance.health("applicationInstance-a")[0] == "ERROR")
        assert appliance.health("applicationInstance-a") == ("RUNNING", None), (folder / "app.log").read_text()
        counts = json.loads((folder / "counts.json").read_text())["streams"]
        assert counts == {
            SPEC.cameras[0]: {"frames": FRAMES, "frames_counted": FRAMES, "objects": {"empty": 0, "person": FRAMES}}
        }
        video = cv2.VideoCapture(str(folder / f"hdmi-{SPEC.cameras[0]}.avi"))
        assert video.get(cv2.CAP_PROP_FRAME_COUNT) == FRAMES
        ok, first = video.read()
        assert ok and first.shape == (480, 640, 3)
        assert len(list((tmp_path / "out" / "sample-frames").glob("*.jpg"))) == FRAMES
        sheet = cv2.imread(str(folder / "contact-sheet.png"))
        assert sheet is not None and sheet.shape[1] >= 400
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["frames"] == FRAMES and stats["frames_per_second"] > 0
        assert 0 < stats["application_share"] < 1
        log = (folder / "app.log").read_text()
        assert "starting: image_classification, 2 classes" in log
        assert folder == folder_of(DEVICE_NAME, "applicationInstance-a", tmp_path / "out")
        assert wait_for_outputs(folder, 1)
        described = summary(folder)
        assert (
            described is not None and f"{SPEC.cameras[0]}: empty 0, person {FRAMES} (over {FRAMES} frames)" in described
        )
        assert str(folder / "contact-sheet.png") in described
        process = appliance._running["applicationInstance-a"].process
        assert process is not None and process.poll() is None  # the cameras are quiet, the app still runs
    finally:
        appliance.stop("applicationInstance-a")
    assert process.poll() is not None
    assert appliance.health("applicationInstance-a") == ("NOT_AVAILABLE", None)


def test_no_summary_before_the_outputs_exist(tmp_path: Path) -> None:
    assert summary(tmp_path) is None
    assert not wait_for_outputs(tmp_path, 0)


def test_a_crashing_application_reports_error_with_its_last_words(
    tmp_path: Path, broken_code: bytes, fake_model: bytes
) -> None:
    settings = ApplianceSettings(_frames(tmp_path / "frames"), output=tmp_path, ml_python=Path(sys.executable))
    appliance = Appliance(settings)
    appliance.start(_deployment("applicationInstance-b", broken_code, fake_model))
    health, reason = _wait(lambda: (h := appliance.health("applicationInstance-b"))[0] == "ERROR" and h, 30)
    assert health == "ERROR" and reason is not None
    assert "exited with code 1" in reason and "KeyError: 'data'" in reason
    appliance.stop_all()


def test_a_code_asset_without_app_py_cannot_start(tmp_path: Path, fake_model: bytes) -> None:
    settings = ApplianceSettings(_frames(tmp_path / "frames"), output=tmp_path, ml_python=Path(sys.executable))
    appliance = Appliance(settings)
    appliance.start(_deployment("applicationInstance-c", _tar_gz({"panorama/other.py": b""}), fake_model))
    _, reason = _wait(lambda: (h := appliance.health("applicationInstance-c"))[0] == "ERROR" and h, 30)
    assert "could not start" in reason and "panorama/app.py" in reason


def test_a_model_that_cannot_load_stops_the_application(tmp_path: Path, good_code: bytes) -> None:
    """The model node starts with the application; a model asset without an MXNet checkpoint stops it."""
    settings = ApplianceSettings(_frames(tmp_path / "frames"), output=tmp_path, ml_python=Path(sys.executable))
    appliance = Appliance(settings)
    placeholder = _tar_gz({"model.txt": b"placeholder model"})
    appliance.start(_deployment("applicationInstance-e", good_code, placeholder))
    _, reason = _wait(lambda: (h := appliance.health("applicationInstance-e"))[0] == "ERROR" and h, 30)
    assert "RuntimeError: model node model_node: the model node could not load its model" in reason
    assert "no MXNet checkpoint" in reason


def test_the_emulator_stops_the_applications_when_it_stops(tmp_path: Path, good_code: bytes, fake_model: bytes) -> None:
    settings = ApplianceSettings(_frames(tmp_path / "frames"), output=tmp_path, ml_python=Path(sys.executable))
    backend = PanoramaBackend(ACCOUNT, REGION, devices=[DEVICE_NAME], appliance=settings)
    assert backend.appliance is not None
    with Emulator(panorama=backend):
        backend.appliance.start(_deployment("applicationInstance-d", good_code, fake_model))
        _wait(lambda: backend.appliance and backend.appliance.health("applicationInstance-d")[0] == "RUNNING")
        process = backend.appliance._running["applicationInstance-d"].process
    assert process is not None and process.poll() is not None


def test_the_emulator_command_runs_the_appliance_unless_told_not_to() -> None:
    from local_aws.emulator import _parser

    assert _parser().parse_args([]).appliance is True
    assert _parser().parse_args(["--no-appliance"]).appliance is False


# --- in the emulator, with the real model server --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A model.tar.gz in the built-in algorithm's layout, made by mxnet in the ML environment."""
    from local_aws.ml import environment

    folder = tmp_path_factory.mktemp("tiny-model")
    subprocess.run([str(environment.ensure()), "-c", TINY_MODEL, str(folder)], check=True, capture_output=True)
    return _tar_gz({p.name: p.read_bytes() for p in sorted(folder.iterdir())})


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, Path]]:
    """The emulator with one device whose appliance is on; this process's clients point at it."""
    out = tmp_path_factory.mktemp("appliance")
    settings = ApplianceSettings(frames=_frames(out / "frames"), max_frames=FRAMES, output=out / "devices")
    backend = PanoramaBackend(ACCOUNT, REGION, devices=[DEVICE_NAME], appliance=settings)
    with Emulator(panorama=backend) as aws, pytest.MonkeyPatch.context() as patch:
        for name, value in aws.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setattr(boto3, "DEFAULT_SESSION", boto3.Session(region_name=REGION))
        clients.reset()
        panorama.use_client(panorama.new_client(REGION))
        yield aws, out / "devices" / DEVICE_NAME
        panorama.use_client(None)
        clients.reset()


def _registered(client: Any, package_id: str, patch: str) -> None:
    def done() -> bool:
        described = client.describe_package_version(PackageId=package_id, PackageVersion="1.0", PatchVersion=patch)
        assert described["Status"] != "FAILED", described.get("StatusDescription")
        return bool(described["Status"] == "REGISTER_COMPLETED")

    _wait(done, 10, "registration")


def _deploy(client: Any, graph: dict[str, Any], replaces: str | None = None) -> str:
    overrides = documents.camera_overrides(SPEC, ACCOUNT, graph)
    response = client.create_application_instance(
        Name=SPEC.instance_name(DEVICE_NAME),
        DefaultRuntimeContextDevice=DEVICE_ID,
        ManifestPayload={"PayloadData": validation.payload(graph)},
        ManifestOverridesPayload={"PayloadData": validation.payload(overrides)},
        RuntimeRoleArn=f"arn:aws:iam::{ACCOUNT}:role/runtime",
        **({"ApplicationInstanceIdToReplace": replaces} if replaces else {}),
    )
    return str(response["ApplicationInstanceId"])


def _settled(client: Any, instance_id: str) -> dict[str, Any]:
    """Describe (as the pipeline's check polls) until the application runs or has failed."""

    def health() -> dict[str, Any] | None:
        described = client.describe_application_instance(ApplicationInstanceId=instance_id)
        settled = described["Status"] == "DEPLOYMENT_SUCCEEDED" and described["HealthStatus"] != "NOT_AVAILABLE"
        return dict(described) if settled else None

    result: dict[str, Any] = _wait(health, 90, f"health of {instance_id}")
    return result


@pytest.mark.appliance
def test_a_device_runs_the_deployed_version_and_a_broken_one_reports_error(
    device: tuple[Emulator, Path], tiny_model: bytes, good_code: bytes, broken_code: bytes, tmp_path: Path
) -> None:
    aws, outputs = device
    client = panorama.new_client(REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="models")
    key = f"runs/{hashlib.sha256(tiny_model).hexdigest()[:8]}/model.tar.gz"
    s3.put_object(Bucket="models", Key=key, Body=tiny_model)
    model = reg.register_model(s3, SPEC, "models", key)
    _registered(client, model["package_id"], model["patch_version"])
    patches = {}
    for name, code in (("good", good_code), ("broken", broken_code)):
        (tmp_path / f"{name}.tar.gz").write_bytes(code)
        registration = code_package.register_code_asset(s3, SPEC, tmp_path / f"{name}.tar.gz")
        _registered(client, registration.package_id, registration.patch_version)
        patches[name] = registration.patch_version
    good = _graph(**{SPEC.model_package: model["patch_version"], SPEC.code_package: patches["good"]})
    broken = _graph(**{SPEC.model_package: model["patch_version"], SPEC.code_package: patches["broken"]})

    first = _deploy(client, good)
    assert _settled(client, first)["HealthStatus"] == "RUNNING"
    folder = outputs / first
    counts = _wait(lambda: (folder / "counts.json").exists() and json.loads((folder / "counts.json").read_text()))
    assert counts["streams"][SPEC.cameras[0]]["frames_counted"] == FRAMES
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["ms_per_frame"]["model_forward"] > 0  # the MXNet model really ran
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    namespace = plan(good, None, {SPEC.code_package}).parameters["metrics_namespace"]
    metrics = _wait(lambda: cloudwatch.list_metrics(Namespace=namespace)["Metrics"], 20, "metrics")
    assert {d["Name"]: d["Value"] for d in metrics[0]["Dimensions"]}["DeviceId"] == DEVICE_ID
    first_process = aws.panorama.appliance._running[first].process  # type: ignore[union-attr]

    crashed = _deploy(client, broken, replaces=first)
    described = _settled(client, crashed)
    assert (described["Status"], described["HealthStatus"]) == ("DEPLOYMENT_SUCCEEDED", "ERROR")
    assert "KeyError: 'data'" in described["StatusDescription"]
    assert [c["DeviceReportedStatus"] for c in described["RuntimeContextStates"]] == ["STOPPED"]
    assert first_process is not None and first_process.poll() is not None  # replaced: stopped

    restored = _deploy(client, good, replaces=crashed)  # what the pipeline's rollback deploys
    assert _settled(client, restored)["HealthStatus"] == "RUNNING"
    process = aws.panorama.appliance._running[restored].process  # type: ignore[union-attr]
    client.remove_application_instance(ApplicationInstanceId=restored)
    assert process is not None and process.poll() is not None


def _until(step: Any, state: RunState, section: str, timeout: float = 90) -> RunState:
    """Poll ``step`` as the state machine does (its wait between polls is real here: processes start)."""

    def polled() -> RunState | None:
        nonlocal state
        state = step(state)
        return None if state[section]["status"] == "IN_PROGRESS" else state  # type: ignore[literal-required]

    result: RunState = _wait(polled, timeout, f"{section} to finish")
    return result


@pytest.mark.appliance
def test_the_pipeline_rolls_back_a_version_whose_application_crashes_on_the_device(
    device: tuple[Emulator, Path],
    tiny_model: bytes,
    good_code: bytes,
    broken_code: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deploy, CheckDeployment and Rollback handlers against a device that runs what they deploy."""
    aws, outputs = device
    control(aws.endpoint, "reset", {})  # no package or instance of the test before
    clients.reset()
    s3 = clients.s3()
    s3.create_bucket(Bucket="artifacts")
    graph = documents.graph(SPEC, ACCOUNT)  # the stored template, as stacks/panorama_application.py renders it
    template = {"spec": json.loads(SPEC.to_json()), "graph": graph}
    template["overrides"] = documents.camera_overrides(SPEC, ACCOUNT, graph)
    s3.put_object(Bucket="artifacts", Key="panorama/template.json", Body=json.dumps(template).encode())
    monkeypatch.setenv(settings.ARTIFACTS_BUCKET, "artifacts")
    monkeypatch.setenv(settings.MANIFEST_TEMPLATE_KEY, "panorama/template.json")
    monkeypatch.setenv(settings.RUNTIME_ROLE_ARN, f"arn:aws:iam::{ACCOUNT}:role/runtime")
    monkeypatch.setattr("lambda_handlers.app_instances.pause", lambda seconds: None)
    install(make_settings())
    client = panorama.new_client(REGION)

    def run(name: str, code: bytes) -> RunState:
        (tmp_path / f"{name}.tar.gz").write_bytes(code)
        registered = code_package.register_code_asset(s3, SPEC, tmp_path / f"{name}.tar.gz")
        _registered(client, registered.package_id, registered.patch_version)
        s3.put_object(Bucket="artifacts", Key=f"runs/{name}/model.tar.gz", Body=tiny_model)
        state: RunState = {
            "run": {"name": name, "started": "2026-12-03T00:00:00Z"},
            "model": {"s3_uri": f"s3://artifacts/runs/{name}/model.tar.gz"},  # type: ignore[typeddict-item]
            "code_package": validate_input.registered_code_package(),
        }
        state = _until(reg.check_registration, reg.register_package(state), "package")
        planned = fleet.plan_deployment(state)  # one batch: the config's one device
        (batch,) = planned["fleet"]["batches"]
        return _until(deployment.check_deployment, deployment.deploy({**planned, "batch": batch}), "deployment")

    try:
        good = run("run-1", good_code)["deployment"]["devices"][0]
        assert good["status"] == "SUCCEEDED"
        crashed_run = run("run-2", broken_code)
        crashed = crashed_run["deployment"]["devices"][0]
        assert crashed_run["deployment"]["status"] == "FAILED"
        assert "HealthStatus ERROR" in crashed["status_description"]
        assert "KeyError: 'data'" in crashed["status_description"]  # the application's own last words
        assert read_json(s3, "artifacts", last_good_key(DEVICE_NAME))["instance_id"] == good["instance_id"]

        state = _until(rollback.check_rollback, rollback.rollback(crashed_run), "rollback")
        restored = state["rollback"]["devices"][0]
        assert (restored["status"], restored["replaced"]) == ("SUCCEEDED", crashed["instance_id"])
        instance_id = str(restored["instance_id"])
        described = client.describe_application_instance(ApplicationInstanceId=instance_id)
        assert (described["Status"], described["HealthStatus"]) == ("DEPLOYMENT_SUCCEEDED", "RUNNING")
        log = (outputs / instance_id / "app.log").read_text()
        assert "starting: image_classification" in log  # run 1's code and model, running again
    finally:
        install(None)
        clients.reset()

"""The local Panorama service through a real boto3 client (carried model) on the emulator's port, S3 in moto.

One emulator for the module (the service mounted on moto's port, as ``panopipe local up`` runs it);
each test starts from a reset emulator (Panorama's devices kept) and its own artifacts bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambda_handlers import app_instances, deployment, fleet, package_versions, rollback, settings, validate_input
from lambda_handlers import package_registration as reg
from lambda_handlers.artifacts import last_good_key, read_json
from lambda_handlers.aws import clients, panorama
from lambda_handlers.errors import PackageRegistrationFailed
from lambda_handlers.settings import install
from lambda_handlers.state import PackageRef, PackageVersion, RunState
from local_aws.emulator import Emulator
from local_aws.emulator_process import EmulatorState, control
from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_devices import device_records, device_spec, numbered_devices
from local_aws.panorama_packages import MAX_VERSIONS_PER_PACKAGE
from local_aws.panorama_protocol import match, routes
from local_aws.panorama_records import Progress, device_id_for_name
from local_aws.panorama_service import is_panorama_request
from panopipe import code_package, local_mode
from panopipe.config import load_config
from panopipe.config.panorama_spec import application_spec
from panorama_app.manifest import documents, validation
from tests.conftest import ROOT
from tests.handlers.conftest import make_settings

ACCOUNT, REGION = "123456789012", "us-east-1"
DEVICE_NAME = "local-device-1"
DEVICE_ID = device_id_for_name(DEVICE_NAME)
OTHER_DEVICE = "device-lobby"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/panopipe-dev-runtime"
CONFIG = load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT)
SPEC = application_spec(CONFIG)
TEMPLATE_KEY = "panorama/application-manifest.json"


@dataclass
class Service:
    backend: PanoramaBackend
    endpoint: str
    session: boto3.Session
    panorama: Any


@pytest.fixture(scope="module")
def emulator() -> Iterator[Service]:
    """The emulator with the Panorama service on moto's port; this process's clients point at it."""
    backend = PanoramaBackend(ACCOUNT, REGION, devices=[DEVICE_NAME, f"id:{OTHER_DEVICE}"])
    with Emulator(panorama=backend) as aws, pytest.MonkeyPatch.context() as patch:
        for name, value in aws.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        session = boto3.Session(region_name=REGION)
        patch.setattr(boto3, "DEFAULT_SESSION", session)
        yield Service(backend, aws.endpoint, session, panorama.new_client(REGION))


@pytest.fixture
def env(emulator: Service) -> Iterator[Service]:
    """An empty local AWS (Panorama's devices kept); the handlers' shared clients are the emulator's."""
    control(emulator.endpoint, "reset", {})
    emulator.backend.progress = Progress()
    clients.reset()
    panorama.use_client(emulator.panorama)
    yield emulator
    panorama.use_client(None)
    clients.reset()


@pytest.fixture
def pano(env: Service) -> Any:
    return env.panorama


@pytest.fixture
def s3(env: Service) -> Any:
    return clients.s3()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"aws-panorama-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


# --- helpers ------------------------------------------------------------------------------------------


def _put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def _binary(s3: Any, location: dict[str, str], body: bytes, extension: str) -> str:
    sha = hashlib.sha256(body).hexdigest()
    _put(s3, location["Bucket"], f"{location['BinaryPrefixLocation']}/{sha}.{extension}", body)
    return sha


def _manifest(s3: Any, location: dict[str, str], document: dict[str, Any], version: str = "1.0") -> str:
    body = package_versions.canonical(document)
    patch = hashlib.sha256(body).hexdigest()
    _put(s3, location["Bucket"], f"{location['ManifestPrefixLocation']}/{version}/{patch}.json", body)
    return patch


def _model_package(s3: Any, location: dict[str, str], model: bytes = b"model") -> dict[str, Any]:
    """A valid package.json of the model package, its asset and descriptor uploaded."""
    asset = _binary(s3, location, model, "tar.gz")
    descriptor = _binary(s3, location, package_versions.canonical(documents.model_descriptor(SPEC)), "json")
    return documents.model_package(SPEC, asset, descriptor)


def _describe_version(pano: Any, package_id: str, patch: str) -> dict[str, Any]:
    return pano.describe_package_version(  # type: ignore[no-any-return]
        PackageId=package_id, PackageVersion="1.0", PatchVersion=patch
    )


def _registered_model(pano: Any, s3: Any, bucket: str, model: bytes = b"model bytes") -> PackageVersion:
    """The model registered by the pipeline's own code, and polled to REGISTER_COMPLETED."""
    key = f"models/{hashlib.sha256(model).hexdigest()[:8]}/model.tar.gz"
    _put(s3, bucket, key, model)
    registration = reg.register_model(s3, SPEC, bucket, key)
    while (
        _describe_version(pano, registration["package_id"], registration["patch_version"])["Status"]
        == "REGISTER_PENDING"
    ):
        pass
    return registration


@pytest.fixture(scope="module")
def code_asset(tmp_path_factory: pytest.TempPathFactory) -> code_package.BuiltAsset:
    """The code package's asset as `panopipe package-app` builds it for the local AWS (no Docker)."""
    return code_package.build(code_package.LocalBuilder(), ROOT, tmp_path_factory.mktemp("code-asset"))


def _wait_registered(pano: Any, package_id: str, patch: str) -> str:
    status = "REGISTER_PENDING"
    while status == "REGISTER_PENDING":
        status = str(_describe_version(pano, package_id, patch)["Status"])
    return status


def _registered_code(pano: Any, s3: Any, built: code_package.BuiltAsset) -> PackageRef:
    """The code package registered by the project's shared registration code (as `panopipe package-app` does)."""
    registration = code_package.register_code_asset(s3, SPEC, built.path)
    status = _wait_registered(pano, registration.package_id, registration.patch_version)
    assert status == "REGISTER_COMPLETED", _describe_version(
        pano, registration.package_id, registration.patch_version
    ).get("StatusDescription")
    return registration.ref()


def _graph(patch: str | None, device_id: str = DEVICE_ID) -> dict[str, Any]:
    return documents.graph(
        SPEC,
        ACCOUNT,
        values={"device_id": device_id, "region": REGION},
        patch_versions={SPEC.model_package: patch} if patch else None,
    )


def _create(pano: Any, graph: dict[str, Any], device_id: str = DEVICE_ID, **extra: Any) -> str:
    overrides = documents.camera_overrides(SPEC, ACCOUNT, graph)
    response = pano.create_application_instance(
        Name=SPEC.instance_name(DEVICE_NAME),
        DefaultRuntimeContextDevice=device_id,
        ManifestPayload={"PayloadData": validation.payload(graph)},
        ManifestOverridesPayload={"PayloadData": validation.payload(overrides)},
        RuntimeRoleArn=ROLE,
        **extra,
    )
    return str(response["ApplicationInstanceId"])


def _statuses(pano: Any, instance_id: str, describes: int) -> list[str]:
    return [pano.describe_application_instance(ApplicationInstanceId=instance_id)["Status"] for _ in range(describes)]


def _error(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


SIGNED = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=0"


def _raw(endpoint: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, JSON body) of a request no SDK would send, signed for Panorama (not checked)."""
    request = urllib.request.Request(
        endpoint + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": SIGNED.format("panorama"), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def _fail_deployments(
    endpoint: str, device: str, count: int = 1, reason: str | None = None, *, crash: bool = False
) -> int:
    """The emulator's control route, as another process (the CLI, a test) uses it."""
    body: dict[str, Any] = {"device": device, "count": count, "crash": crash, **({"reason": reason} if reason else {})}
    return int(control(endpoint, "panorama/fail-deployments", body)["pendingFailures"])


# --- the model drives routing ----------------------------------------------------------------------


def test_every_operation_of_the_model_routes_to_itself() -> None:
    assert len(routes()) == 34
    for route in routes():
        path = route.operation.http["requestUri"].split("?")[0]
        sample = path.replace("{", "x").replace("}", "").replace("+", "")
        operation, _ = match(route.method, sample, sample, {})
        assert operation.name == route.operation.name
    operation, params = match("GET", "/packages/metadata/packageName%2Fabc", "/packages/metadata/packageName/abc", {})
    assert (operation.name, params) == ("DescribePackage", {"PackageId": "packageName/abc"})
    operation, params = match("GET", None, "/packages/metadata/packageName/abc/versions/1.0", {})
    assert (operation.name, params["PackageId"]) == ("DescribePackageVersion", "packageName/abc")


def test_requests_are_dispatched_by_the_signing_service() -> None:
    assert is_panorama_request({"HTTP_AUTHORIZATION": SIGNED.format("panorama"), "PATH_INFO": "/packages"})
    assert not is_panorama_request({"HTTP_AUTHORIZATION": SIGNED.format("s3"), "PATH_INFO": "/packages"})
    assert not is_panorama_request({"PATH_INFO": "/devices"})


def test_the_configs_devices_are_the_local_appliances() -> None:
    backend = PanoramaBackend(devices=local_mode.panorama_devices(CONFIG))  # what `panopipe local up` starts
    assert [(d["DeviceId"], d["Name"]) for d in backend.list_devices()] == [(DEVICE_ID, DEVICE_NAME)]
    with pytest.raises(ValueError, match="id:<device id>"):
        PanoramaBackend(devices=["id:"])


# --- devices ---------------------------------------------------------------------------------------


def test_devices_come_from_the_config(pano: Any) -> None:
    devices = pano.list_devices()["Devices"]
    assert {(d["DeviceId"], d["Name"]) for d in devices} == {(DEVICE_ID, DEVICE_NAME), (OTHER_DEVICE, OTHER_DEVICE)}
    assert device_id_for_name(DEVICE_NAME) == DEVICE_ID and DEVICE_ID.startswith("device-")
    assert [d["Name"] for d in pano.list_devices(NameFilter="local-")["Devices"]] == [DEVICE_NAME]
    first = pano.list_devices(MaxResults=1, SortBy="NAME", SortOrder="DESCENDING")
    assert [d["Name"] for d in first["Devices"]] == [DEVICE_NAME]
    second = pano.list_devices(MaxResults=1, SortBy="NAME", SortOrder="DESCENDING", NextToken=first["NextToken"])
    assert [d["Name"] for d in second["Devices"]] == [OTHER_DEVICE] and "NextToken" not in second
    described = pano.describe_device(DeviceId=DEVICE_ID)
    assert (described["Name"], described["DeviceConnectionStatus"], described["ProvisioningStatus"]) == (
        DEVICE_NAME,
        "ONLINE",
        "SUCCEEDED",
    )
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.describe_device(DeviceId="device-unknown")


def test_devices_report_their_tags(pano: Any, env: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    tags = {"site": "Paris, 3rd floor", "rule": "a=b", "empty": ""}
    specs = [device_spec(DEVICE_NAME, tags), f"id:{OTHER_DEVICE},site=lyon"]  # as `panopipe local up` passes them
    monkeypatch.setattr(env.backend, "_devices", device_records(specs))
    listed = {d["Name"]: d["Tags"] for d in pano.list_devices()["Devices"]}
    assert listed == {DEVICE_NAME: tags, OTHER_DEVICE: {"site": "lyon"}}
    assert pano.describe_device(DeviceId=DEVICE_ID)["Tags"] == tags
    assert pano.describe_device(DeviceId=OTHER_DEVICE)["Tags"] == {"site": "lyon"}


def test_a_fleet_of_200_is_listed_in_8_pages_of_25_and_resolved_through_them(
    pano: Any, env: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env.backend, "_devices", device_records(numbered_devices(200, {"site": "a"})))
    pages, token = [], None
    while True:
        page = pano.list_devices(**({"NextToken": token} if token else {}))
        pages.append([d["Name"] for d in page["Devices"]])
        token = page.get("NextToken")
        if not token:
            break
    assert [len(names) for names in pages] == [25] * 8  # AWS's default and maximum page: 25
    fleet = sorted(f"local-device-{i}" for i in range(1, 201))
    assert sorted(name for names in pages for name in names) == fleet
    assert len(pano.list_devices(MaxResults=25)["Devices"]) == 25
    assert len(pano.list_devices(MaxResults=7)["Devices"]) == 7
    with pytest.raises(pano.exceptions.ValidationException) as info:
        pano.list_devices(MaxResults=26)
    assert "less than or equal to 25" in _error(info)[1]
    for token in ("not-a-token", pano.list_application_instances(MaxResults=1).get("NextToken") or "e30="):
        with pytest.raises(pano.exceptions.ValidationException) as info:
            pano.list_devices(NextToken=token)
        assert "NextToken is not a token of this operation" in _error(info)[1]

    calls: list[str] = []

    def count(**_: Any) -> None:
        calls.append("ListDevices")

    pano.meta.events.register("after-call.panorama.ListDevices", count)
    try:
        resolved = app_instances.resolve_devices((settings.Device(None, None, {"site": "a"}),))
    finally:
        pano.meta.events.unregister("after-call.panorama.ListDevices", count)
    assert sorted(resolved) == fleet and len(set(resolved.values())) == 200
    assert len(calls) == 8


def test_local_up_says_whether_the_running_local_aws_has_the_devices_asked_for(env: Service) -> None:
    state = EmulatorState(env.endpoint, int(env.endpoint.rsplit(":", 1)[1]), os.getpid(), REGION)
    specs = [DEVICE_NAME, f"id:{OTHER_DEVICE}"]
    assert local_mode.running_devices(state) == {DEVICE_ID: (DEVICE_NAME, {}), OTHER_DEVICE: (OTHER_DEVICE, {})}
    same = local_mode.running_message(state, specs)
    assert same.endswith(f"with the devices asked for: 2 devices ({DEVICE_NAME}, {OTHER_DEVICE})")
    other = local_mode.running_message(state, local_mode.panorama_devices(CONFIG, 3))
    assert "with 2 devices, not the 3 devices (local-device-1, local-device-2, local-device-3) asked for" in other
    assert other.endswith("its devices are the ones it started with (`panopipe local down` first to change them)")
    gone = EmulatorState("http://localhost:9", 9, os.getpid(), REGION)
    assert local_mode.running_devices(gone) is None
    assert local_mode.running_message(gone, specs).endswith(
        f"(pid {os.getpid()}); its devices are the ones it started with (`panopipe local down` first to change them)"
    )


# --- packages and versions -------------------------------------------------------------------------


def test_register_model_runs_the_whole_package_sequence(pano: Any, s3: Any, bucket: str) -> None:
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.describe_package(PackageId=f"packageName/{SPEC.model_package}")
    key = "models/1/model.tar.gz"
    _put(s3, bucket, key, b"raw model")
    registration = reg.register_model(s3, SPEC, bucket, key)  # DescribePackage 404 → CreatePackage → upload → register

    by_name = pano.describe_package(PackageId=f"packageName/{SPEC.model_package}")
    by_id = pano.describe_package(PackageId=registration["package_id"])
    assert by_name == {**by_id, "ResponseMetadata": by_name["ResponseMetadata"]}
    location = by_id["StorageLocation"]
    assert location["Bucket"] == f"panorama-local-storage-{ACCOUNT}-{REGION}"
    assert location["BinaryPrefixLocation"] == f"{ACCOUNT}/nodePackages/{registration['package_id']}/binaries"
    stored = s3.list_objects_v2(
        Bucket=location["Bucket"], Prefix=f"{ACCOUNT}/nodePackages/{registration['package_id']}"
    )
    assert len(stored["Contents"]) == 3  # model, descriptor, package.json

    first = _describe_version(pano, registration["package_id"], registration["patch_version"])
    second = _describe_version(pano, registration["package_id"], registration["patch_version"])
    assert (first["Status"], second["Status"]) == ("REGISTER_PENDING", "REGISTER_COMPLETED")
    assert second["IsLatestPatch"] and second["PackageName"] == SPEC.model_package
    latest = pano.describe_package_version(PackageId=registration["package_id"], PackageVersion="1.0")
    assert latest["PatchVersion"] == registration["patch_version"]
    assert package_versions.registration_status(registration) == "REGISTER_COMPLETED"

    again = reg.register_model(s3, SPEC, bucket, key)  # same bytes: ConflictException, adopted by the handler
    assert again == registration
    with pytest.raises(pano.exceptions.ConflictException):
        pano.create_package(PackageName=SPEC.model_package)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("schema", "invalid package.json"),
        ("asset", "not found under the package's binary prefix"),
        ("name", "names package"),
        ("sha", "must be the sha256"),
    ],
)
def test_a_bad_package_json_fails_registration_asynchronously(
    pano: Any, s3: Any, breakage: str, expected: str, env: Service
) -> None:
    env.backend.progress = Progress(registration_describes=2)
    package = pano.create_package(PackageName="bad_package" if breakage != "name" else "other_name")
    location = package["StorageLocation"]
    document = _model_package(s3, location)
    document["nodePackage"]["name"] = "bad_package"
    if breakage == "schema":
        del document["nodePackage"]["interfaces"]
    if breakage == "asset":
        document["nodePackage"]["assets"][0]["implementations"][0]["assetUri"] = f"{'0' * 64}.tar.gz"
    patch = _manifest(s3, location, document)
    if breakage == "sha":
        body = package_versions.canonical(document) + b" "
        _put(s3, location["Bucket"], f"{location['ManifestPrefixLocation']}/1.0/{patch}.json", body)

    pano.register_package_version(PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion=patch)
    statuses = [_describe_version(pano, package["PackageId"], patch) for _ in range(3)]
    assert [d["Status"] for d in statuses] == ["REGISTER_PENDING", "REGISTER_PENDING", "FAILED"]
    assert expected in statuses[-1]["StatusDescription"]
    with pytest.raises(PackageRegistrationFailed, match=expected.split("'")[0]):
        package_versions.registration_status(
            {
                "package_id": package["PackageId"],
                "package_name": "p",
                "package_version": "1.0",
                "patch_version": patch,
            }
        )


def _tarball(members: dict[str, bytes], compressed: bool = True) -> bytes:
    """A gzipped tar of ``members`` (path → content); not ``compressed``: what docker export writes."""
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz" if compressed else "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return raw.getvalue()


CODE_BREAKAGES = {
    # the official schema (nodePackage.schema.json) refuses a field it does not define
    "package.json schema": ("schema", "invalid package.json (schema nodePackage.schema.json): $.nodePackage"),
    "descriptor schema": ("descriptor", "(schema assetDescriptor.schema.json)"),
    "descriptor of a model": ("model-descriptor", "of a container asset must hold runtimeDescriptor"),
    "asset named by another sha256": ("sha", "is not named by the sha256 of its content"),
    "no entry file": ("entry", "holds no /panorama/app.py, the entry its descriptor runs"),
    "not a tarball": ("not-tar", "is not a container filesystem archive"),
}


@pytest.mark.parametrize("case", sorted(CODE_BREAKAGES))
def test_a_bad_code_package_fails_registration_with_the_reason(
    pano: Any, s3: Any, env: Service, code_asset: code_package.BuiltAsset, case: str
) -> None:
    """What the code package's registration checks: the official schemas, the asset's sha256, its entry file."""
    breakage, expected = CODE_BREAKAGES[case]
    location = pano.create_package(PackageName=SPEC.code_package)["StorageLocation"]
    asset = code_asset.path.read_bytes()
    if breakage == "entry":
        asset = _tarball({"panorama/elsewhere.py": b"print()", code_package.LOCAL_MARKER: b"{}"})
    if breakage == "not-tar":
        asset = b"not a tar at all"
    asset_sha = _binary(s3, location, asset, "tar.gz")
    descriptor = documents.code_descriptor()
    if breakage == "descriptor":
        descriptor["runtimeDescriptor"]["entry"]["interpreter"] = "python3"  # not in the schema
    if breakage == "model-descriptor":
        descriptor = documents.model_descriptor(SPEC)
    descriptor_sha = _binary(s3, location, package_versions.canonical(descriptor), "json")
    if breakage == "sha":
        asset_sha = "0" * 64
        _put(s3, location["Bucket"], f"{location['BinaryPrefixLocation']}/{asset_sha}.tar.gz", asset)
    document = documents.code_package(SPEC, asset_sha, descriptor_sha)
    if breakage == "schema":
        document["nodePackage"]["maintainer"] = "someone"
    patch = _manifest(s3, location, document)
    package_id = pano.describe_package(PackageId=f"packageName/{SPEC.code_package}")["PackageId"]

    pano.register_package_version(PackageId=package_id, PackageVersion="1.0", PatchVersion=patch, MarkLatest=True)

    assert _wait_registered(pano, package_id, patch) == "FAILED"
    assert expected in _describe_version(pano, package_id, patch)["StatusDescription"]
    with pytest.raises(pano.exceptions.ValidationException) as info:  # a FAILED version deploys nowhere
        _create(pano, _graph(None))
    assert "not registered" in _error(info)[1] or "status FAILED" in _error(info)[1]


def test_a_code_package_built_with_docker_export_layout_registers(
    pano: Any, s3: Any, env: Service, tmp_path: Any
) -> None:
    """A real container export has the whole filesystem, members without a leading / (or with ./)."""
    exported = tmp_path / "export.tar"
    exported.write_bytes(
        _tarball({"./usr/bin/python3": b"elf", "./panorama/app.py": b"print('app')"}, compressed=False)
    )
    asset = code_package.gzip_named(exported, tmp_path)
    built = code_package.BuiltAsset(tmp_path, asset.name, asset.name[:64], "s" * 64, "container")
    pano.create_package(PackageName=SPEC.code_package)
    assert _registered_code(pano, s3, built)["package_name"] == SPEC.code_package


def test_unknown_package_or_patch_version_is_refused(pano: Any, s3: Any) -> None:
    package = pano.create_package(PackageName="lonely")
    with pytest.raises(pano.exceptions.ValidationException) as info:
        pano.register_package_version(PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion="a" * 64)
    assert "no package manifest at s3://" in _error(info)[1]
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.register_package_version(PackageId="package-nope", PackageVersion="1.0", PatchVersion="a" * 64)
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        _describe_version(pano, package["PackageId"], "b" * 64)
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.describe_package_version(PackageId=package["PackageId"], PackageVersion="1.0")
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.deregister_package_version(PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion="c" * 64)


def test_the_21st_version_of_a_package_is_refused_until_one_is_deregistered(pano: Any, s3: Any) -> None:
    package = pano.create_package(PackageName="busy_package")
    location = package["StorageLocation"]
    document = _model_package(s3, location)
    patches = []
    for index in range(MAX_VERSIONS_PER_PACKAGE + 1):
        document["nodePackage"]["description"] = f"variant {index}"
        patches.append(_manifest(s3, location, document))
    for patch in patches[:-1]:
        pano.register_package_version(PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion=patch)
    with pytest.raises(pano.exceptions.ServiceQuotaExceededException) as info:
        pano.register_package_version(PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion=patches[-1])
    assert "quota is 20" in _error(info)[1]
    assert info.value.response["ServiceCode"] == "panorama"

    pano.deregister_package_version(PackageId="packageName/busy_package", PackageVersion="1.0", PatchVersion=patches[0])
    pano.register_package_version(
        PackageId=package["PackageId"], PackageVersion="1.0", PatchVersion=patches[-1], MarkLatest=True
    )
    assert _describe_version(pano, package["PackageId"], patches[-1])["IsLatestPatch"]
    assert not _describe_version(pano, package["PackageId"], patches[1])["IsLatestPatch"]


# --- application instances -------------------------------------------------------------------------


def test_an_instance_deploys_asynchronously_and_replaces_the_previous_one(
    pano: Any, s3: Any, bucket: str, env: Service, code_asset: code_package.BuiltAsset
) -> None:
    pano.create_package(PackageName=SPEC.code_package)  # what the stack's AWS::Panorama::Package makes
    code = _registered_code(pano, s3, code_asset)
    registration = _registered_model(pano, s3, bucket)
    graph = _graph(registration["patch_version"])
    first = _create(pano, graph, Tags={"panopipe:run": "run-1"})

    listed = pano.list_application_instances(DeviceId=DEVICE_ID)["ApplicationInstances"]
    assert [(i["ApplicationInstanceId"], i["Status"], i["Tags"]) for i in listed] == [
        (first, "DEPLOYMENT_PENDING", {"panopipe:run": "run-1"})
    ]
    assert _statuses(pano, first, 4) == [
        "DEPLOYMENT_PENDING",
        "DEPLOYMENT_IN_PROGRESS",
        "DEPLOYMENT_SUCCEEDED",
        "DEPLOYMENT_SUCCEEDED",
    ]
    described = pano.describe_application_instance(ApplicationInstanceId=first)
    assert described["HealthStatus"] == "RUNNING" and described["RuntimeRoleArn"] == ROLE
    assert [(c["RuntimeContextName"], c["DeviceReportedStatus"]) for c in described["RuntimeContextStates"]] == [
        ("code_node", "RUNNING")
    ]
    latest = pano.describe_package_version(PackageId=f"packageName/{SPEC.code_package}", PackageVersion="1.0")
    assert (latest["PatchVersion"], latest["Status"]) == (code["patch_version"], "REGISTER_COMPLETED")

    second = _create(pano, graph, ApplicationInstanceIdToReplace=first)
    assert pano.describe_application_instance(ApplicationInstanceId=second)["ApplicationInstanceIdToReplace"] == first
    # a second replacement while the first is under way is refused (two runs deploying at once)
    with pytest.raises(pano.exceptions.ConflictException) as conflict:
        _create(pano, graph, ApplicationInstanceIdToReplace=first)
    assert f"it is already being replaced by {second} (DEPLOYMENT_PENDING)" in str(conflict.value)
    assert _statuses(pano, second, 3)[-1] == "DEPLOYMENT_SUCCEEDED"
    assert pano.describe_application_instance(ApplicationInstanceId=first)["Status"] == "REMOVAL_SUCCEEDED"
    running = pano.list_application_instances(StatusFilter="DEPLOYMENT_SUCCEEDED")["ApplicationInstances"]
    assert [i["ApplicationInstanceId"] for i in running] == [second]
    page = pano.list_application_instances(MaxResults=1)
    assert len(page["ApplicationInstances"]) == 1 and page["NextToken"]
    rest = pano.list_application_instances(MaxResults=1, NextToken=page["NextToken"])
    assert rest["ApplicationInstances"][0]["ApplicationInstanceId"] == second

    with pytest.raises(pano.exceptions.ConflictException):  # the running instance uses the patch version
        pano.deregister_package_version(
            PackageId=registration["package_id"], PackageVersion="1.0", PatchVersion=registration["patch_version"]
        )
    pano.remove_application_instance(ApplicationInstanceId=second)
    assert pano.describe_application_instance(ApplicationInstanceId=second)["Status"] == "REMOVAL_SUCCEEDED"
    pano.deregister_package_version(
        PackageId=registration["package_id"], PackageVersion="1.0", PatchVersion=registration["patch_version"]
    )
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.remove_application_instance(ApplicationInstanceId="applicationInstance-nope")


def test_injected_failures_fail_the_next_deployments_on_a_device(
    pano: Any, s3: Any, bucket: str, env: Service, code_asset: code_package.BuiltAsset
) -> None:
    _registered_code(pano, s3, code_asset)
    graph = _graph(_registered_model(pano, s3, bucket)["patch_version"])
    assert env.backend.fail_next_deployments(DEVICE_NAME, 1, reason="camera stream unreachable") == 1
    assert _fail_deployments(env.endpoint, DEVICE_ID, 1) == 2  # a separate process's way

    failed = _create(pano, graph)
    assert _statuses(pano, failed, 3)[-1] == "DEPLOYMENT_FAILED"
    described = pano.describe_application_instance(ApplicationInstanceId=failed)
    assert described["StatusDescription"] == "camera stream unreachable" and described["HealthStatus"] == "ERROR"
    assert [c["DeviceReportedStatus"] for c in described["RuntimeContextStates"]] == ["LAUNCH_ERROR"]
    assert _statuses(pano, _create(pano, graph), 3)[-1] == "DEPLOYMENT_FAILED"
    assert _statuses(pano, _create(pano, graph), 3)[-1] == "DEPLOYMENT_SUCCEEDED"
    assert _statuses(pano, _create(pano, _graph(None, OTHER_DEVICE), OTHER_DEVICE), 3)[-1] == "DEPLOYMENT_SUCCEEDED"

    with pytest.raises(urllib.error.HTTPError) as info:
        _fail_deployments(env.endpoint, "no-such-device")
    assert info.value.code == 404


def test_a_deployed_application_reports_each_health_status(
    pano: Any, s3: Any, bucket: str, env: Service, code_asset: code_package.BuiltAsset
) -> None:
    """NOT_AVAILABLE until the application has started, then RUNNING; ERROR for an injected crash."""
    _registered_code(pano, s3, code_asset)
    graph = _graph(_registered_model(pano, s3, bucket)["patch_version"])

    def health(instance_id: str, describes: int) -> list[tuple[str, str]]:
        described = [pano.describe_application_instance(ApplicationInstanceId=instance_id) for _ in range(describes)]
        return [(d["Status"], d["HealthStatus"]) for d in described]

    healthy = _create(pano, graph)
    assert health(healthy, 4) == [
        ("DEPLOYMENT_PENDING", "NOT_AVAILABLE"),
        ("DEPLOYMENT_IN_PROGRESS", "NOT_AVAILABLE"),
        ("DEPLOYMENT_SUCCEEDED", "NOT_AVAILABLE"),
        ("DEPLOYMENT_SUCCEEDED", "RUNNING"),
    ]
    assert _fail_deployments(env.endpoint, DEVICE_NAME, 1, "segfault in app.py", crash=True) == 1
    crashed = _create(pano, graph, ApplicationInstanceIdToReplace=healthy)
    assert health(crashed, 4)[-2:] == [("DEPLOYMENT_SUCCEEDED", "NOT_AVAILABLE"), ("DEPLOYMENT_SUCCEEDED", "ERROR")]
    described = pano.describe_application_instance(ApplicationInstanceId=crashed)
    assert described["StatusDescription"].endswith("segfault in app.py")
    assert [c["DeviceReportedStatus"] for c in described["RuntimeContextStates"]] == ["STOPPED"]


def test_create_application_instance_refuses_what_the_service_refuses(
    pano: Any, s3: Any, bucket: str, code_asset: code_package.BuiltAsset
) -> None:
    registration = _registered_model(pano, s3, bucket)
    graph = _graph(registration["patch_version"])

    with pytest.raises(pano.exceptions.ValidationException) as info:  # the code package does not exist
        _create(pano, graph)
    assert f"{ACCOUNT}::{SPEC.code_package} version 1.0: no such package" in _error(info)[1]
    pano.create_package(PackageName=SPEC.code_package)  # the stack's AWS::Panorama::Package: no version yet
    with pytest.raises(pano.exceptions.ValidationException) as info:  # a version never registered
        _create(pano, graph)
    assert _error(info)[0] == "ValidationException"
    assert f"{ACCOUNT}::{SPEC.code_package} version 1.0: not registered" in _error(info)[1]
    code = _registered_code(pano, s3, code_asset)
    pinned = documents.graph(
        SPEC,
        ACCOUNT,
        values={"device_id": DEVICE_ID, "region": REGION},
        patch_versions={SPEC.model_package: registration["patch_version"], SPEC.code_package: "e" * 64},
    )
    with pytest.raises(pano.exceptions.ValidationException) as info:  # a code patch never registered
        _create(pano, pinned)
    assert f"{ACCOUNT}::{SPEC.code_package} version 1.0 patch {'e' * 64}: not registered" in _error(info)[1]
    pinned["nodeGraph"]["packages"][0]["patchVersion"] = code["patch_version"]
    assert _create(pano, pinned).startswith("applicationInstance-")  # both patches registered: deployed

    with pytest.raises(pano.exceptions.ValidationException) as info:
        _create(pano, graph, device_id="device-unknown")
    assert "no such device" in _error(info)[1]

    with pytest.raises(pano.exceptions.ValidationException) as info:
        _create(pano, _graph("f" * 64))
    assert f"patch {'f' * 64}: not registered" in _error(info)[1]

    with pytest.raises(pano.exceptions.ValidationException) as info:
        _create(pano, graph, ApplicationInstanceIdToReplace="applicationInstance-nope")
    assert "no such application instance" in _error(info)[1]

    broken = json.loads(json.dumps(graph))
    broken["nodeGraph"]["edges"].append({"producer": "camera_node.video_out", "consumer": "model_node.video_in"})
    with pytest.raises(pano.exceptions.ValidationException) as info:
        _create(pano, broken)
    assert "model node 'model_node' must have no edges" in _error(info)[1]

    with pytest.raises(pano.exceptions.ValidationException) as info:
        pano.create_application_instance(
            DefaultRuntimeContextDevice=DEVICE_ID, ManifestPayload={"PayloadData": validation.payload(graph)}
        )
    assert "camera_node must be overridden" in _error(info)[1]

    too_large = validation.payload(graph) + " " * (validation.MAX_PAYLOAD_CHARS + 1 - len(validation.payload(graph)))
    with pytest.raises(pano.exceptions.ValidationException) as info:
        pano.create_application_instance(
            DefaultRuntimeContextDevice=DEVICE_ID, ManifestPayload={"PayloadData": too_large}
        )
    assert "length less than or equal to 51200 (it has 51201)" in _error(info)[1]

    with pytest.raises(pano.exceptions.ValidationException) as info:
        pano.create_application_instance(DefaultRuntimeContextDevice=DEVICE_ID, ManifestPayload={"PayloadData": "{"})
    assert "is not JSON" in _error(info)[1]

    pending = _manifest(
        s3,
        pano.describe_package(PackageId=registration["package_id"])["StorageLocation"],
        _model_package(
            s3, pano.describe_package(PackageId=registration["package_id"])["StorageLocation"], b"other model"
        ),
    )
    pano.register_package_version(PackageId=registration["package_id"], PackageVersion="1.0", PatchVersion=pending)
    with pytest.raises(pano.exceptions.ValidationException) as info:
        _create(pano, _graph(pending))
    assert "status REGISTER_PENDING, not REGISTER_COMPLETED" in _error(info)[1]


def test_requests_are_validated_against_the_model(pano: Any, env: Service) -> None:
    with pytest.raises(pano.exceptions.ValidationException) as info:  # botocore checks no maximum, the service does
        pano.list_application_instances(MaxResults=26)
    assert "less than or equal to 25" in _error(info)[1]
    with pytest.raises(pano.exceptions.ValidationException) as info:  # nor enums
        pano.list_application_instances(StatusFilter="RUNNING")
    assert "enum value set" in _error(info)[1]
    with pytest.raises(pano.exceptions.ValidationException) as info:  # nor patterns
        pano.create_package(PackageName="not a name!")
    assert "regular expression pattern" in _error(info)[1]
    with pytest.raises(ClientError) as not_served:
        pano.list_packages()
    assert _error(not_served)[0] == "NotImplementedException"

    # what no SDK sends: an unknown field, a missing one, an unknown path
    status, headers, body = _raw(env.endpoint, "POST", "/packages", {"PackageName": "p", "Bogus": 1})
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert "unknown field(s) in the request body: Bogus" in body["Message"]
    assert body["Fields"] == [{"Name": "Bogus", "Message": "unknown field"}]
    status, headers, body = _raw(env.endpoint, "POST", "/packages", {})
    assert status == 400 and 'Missing required parameter in input: "PackageName"' in body["Message"]
    status, headers, body = _raw(env.endpoint, "GET", "/no/such/path")
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"


# --- the pipeline's own handlers, end to end -------------------------------------------------------


@pytest.fixture
def handlers(
    pano: Any, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, code_asset: code_package.BuiltAsset
) -> Iterator[None]:
    """The pipeline's handlers pointed at the local service: the stored template, their variables, settings."""
    graph = documents.graph(SPEC, ACCOUNT)  # the stored template, as stacks/panorama_application.py renders it
    template = {
        "spec": json.loads(SPEC.to_json()),
        "graph": graph,
        "overrides": documents.camera_overrides(SPEC, ACCOUNT, graph),
    }
    _put(s3, bucket, TEMPLATE_KEY, json.dumps(template).encode())
    for name, value in {
        settings.ARTIFACTS_BUCKET: bucket,
        settings.MANIFEST_TEMPLATE_KEY: TEMPLATE_KEY,
        settings.RUNTIME_ROLE_ARN: ROLE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(app_instances, "pause", lambda seconds: None)
    install(make_settings({"runs.keep_package_versions": 2}))
    _registered_code(pano, s3, code_asset)
    yield
    install(None)


def _polled(step: Any, state: RunState, section: str) -> RunState:
    """Poll ``step`` until its section leaves IN_PROGRESS (at most 6 polls, as the state machine would)."""
    for _ in range(6):
        state = step(state)
        if state[section]["status"] != "IN_PROGRESS":  # type: ignore[literal-required]
            return state
    raise AssertionError(f"{section} still in progress after 6 polls")


def _deployed_run(s3: Any, bucket: str, run: str) -> RunState:
    """Register the run's model and deploy it, as the state machine chains the steps."""
    _put(s3, bucket, f"runs/{run}/model.tar.gz", f"model of {run}".encode())
    state: RunState = {
        "run": {"name": run, "started": "2026-01-01T00:00:00Z"},
        "model": {"s3_uri": f"s3://{bucket}/runs/{run}/model.tar.gz"},  # type: ignore[typeddict-item]
        "code_package": validate_input.registered_code_package(),  # ValidateInput's lookup, on the local service
    }
    state = reg.register_package(state)
    state = reg.check_registration(state)
    assert state["package"]["status"] == "IN_PROGRESS"
    state = _polled(reg.check_registration, state, "package")
    assert state["package"]["status"] == "SUCCEEDED"
    planned = fleet.plan_deployment(state)  # the device by name, through ListDevices
    (batch,) = planned["fleet"]["batches"]
    return _polled(deployment.check_deployment, deployment.deploy({**planned, "batch": batch}), "deployment")


def test_the_pipeline_handlers_register_deploy_replace_and_roll_back(
    s3: Any, bucket: str, env: Service, pano: Any, handlers: None
) -> None:
    runs = {}
    for run in ("run-1", "run-2", "run-3"):
        if run == "run-3":
            _fail_deployments(env.endpoint, DEVICE_NAME, 1, "model failed to load")
        runs[run] = _deployed_run(s3, bucket, run)

    first, second, third = (runs[r]["deployment"]["devices"][0] for r in ("run-1", "run-2", "run-3"))
    assert (first["status"], second["status"], third["status"]) == ("SUCCEEDED", "SUCCEEDED", "FAILED")
    assert (first["device_id"], second["replaced"], third["replaced"]) == (
        DEVICE_ID,
        first["instance_id"],
        second["instance_id"],
    )
    assert "model failed to load" in third["status_description"]
    assert "code_node LAUNCH_ERROR" in third["status_description"]
    assert runs["run-3"]["package"]["deregistered"] == [runs["run-1"]["package"]["patch_version"]]
    good = read_json(s3, bucket, last_good_key(DEVICE_NAME))
    assert good["instance_id"] == second["instance_id"]

    state = _polled(rollback.check_rollback, rollback.rollback(runs["run-3"]), "rollback")
    restored = state["rollback"]["devices"][0]
    assert (restored["status"], restored["replaced"]) == ("SUCCEEDED", third["instance_id"])
    statuses = {
        i["ApplicationInstanceId"]: i["Status"]
        for i in pano.list_application_instances(DeviceId=DEVICE_ID)["ApplicationInstances"]
    }
    assert statuses == {
        first["instance_id"]: "REMOVAL_SUCCEEDED",
        second["instance_id"]: "REMOVAL_SUCCEEDED",
        third["instance_id"]: "REMOVAL_SUCCEEDED",
        restored["instance_id"]: "DEPLOYMENT_SUCCEEDED",
    }


def test_a_crashing_application_is_rolled_back_and_never_becomes_last_good(
    s3: Any, bucket: str, env: Service, pano: Any, handlers: None
) -> None:
    """The local service deploys it (DEPLOYMENT_SUCCEEDED), then reports HealthStatus ERROR."""
    good = _deployed_run(s3, bucket, "run-1")["deployment"]["devices"][0]
    _fail_deployments(env.endpoint, DEVICE_NAME, 1, "Traceback: KeyError 'data'", crash=True)
    crashed_run = _deployed_run(s3, bucket, "run-2")

    crashed = crashed_run["deployment"]["devices"][0]
    assert crashed_run["deployment"]["status"] == "FAILED" and crashed_run["failed_step"] == "CheckDeployment"
    assert "HealthStatus ERROR" in crashed["status_description"] and "KeyError 'data'" in crashed["status_description"]
    assert read_json(s3, bucket, last_good_key(DEVICE_NAME))["instance_id"] == good["instance_id"]

    state = _polled(rollback.check_rollback, rollback.rollback(crashed_run), "rollback")
    restored = state["rollback"]["devices"][0]
    assert (restored["status"], restored["replaced"]) == ("SUCCEEDED", crashed["instance_id"])
    described = pano.describe_application_instance(ApplicationInstanceId=restored["instance_id"])
    assert (described["Status"], described["HealthStatus"]) == ("DEPLOYMENT_SUCCEEDED", "RUNNING")

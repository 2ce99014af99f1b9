"""The code package: build (Docker behind a test double, or the local build), export, hash, upload, register.

S3 and STS through moto, Panorama through a Stubber on the carried API model; the docker CLI is the
one :data:`panopipe.code_package.Runner` a test double replaces. The documents uploaded are checked
against the official manifest schemas, as the real service checks them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from typer.testing import CliRunner

from lambda_handlers.artifacts import history_key
from lambda_handlers.aws import panorama
from local_aws.panorama_schema import DESCRIPTOR, PACKAGE, schema_problems
from panopipe import code_package, exit_codes, local_state
from panopipe.cli import app
from panopipe.config import load_config
from panopipe.config.panorama_spec import package_names
from panopipe.runs import RunError
from tests.conftest import ROOT

CONFIG = load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT)
CODE_PACKAGE = package_names(CONFIG)[1]
ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
STORE = "panorama-storage-bucket"
LOCATION = {
    "Bucket": STORE,
    "BinaryPrefixLocation": "123456789012/nodePackages/pkg-code/binaries",
    "ManifestPrefixLocation": "123456789012/nodePackages/pkg-code/manifests",
    "GeneratedPrefixLocation": "123456789012/nodePackages/pkg-code/generated",
    "RepoPrefixLocation": "123456789012/nodePackages/pkg-code/repo",
}
DESCRIBED_PACKAGE = {
    "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-code",
    "CreatedTime": "2026-01-01T00:00:00Z",
    "PackageId": "pkg-code",
    "PackageName": CODE_PACKAGE,
    "StorageLocation": LOCATION,
    "Tags": {},
}
cli = CliRunner()


# --- what goes into the image ----------------------------------------------------------------------------


def test_the_image_files_are_read_from_the_dockerfile() -> None:
    files = dict(code_package.image_files(ROOT))
    assert files["panorama_app/device_entry.py"] == "/panorama/app.py"
    assert files["panorama_app/requirements.txt"] == "/panorama/requirements.txt"
    assert files["panorama_app/application.py"] == "/panorama/panorama_app/application.py"
    assert all((ROOT / source).is_file() for source in files)


def test_the_source_hash_follows_every_copied_file_and_the_dockerfile(tmp_path: Path) -> None:
    for source, _ in [*code_package.image_files(ROOT), (code_package.DOCKERFILE.as_posix(), "")]:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_bytes((ROOT / source).read_bytes())
    before = code_package.source_sha256(tmp_path)
    assert before == code_package.source_sha256(ROOT)
    with (tmp_path / "panorama_app" / "metrics.py").open("a") as changed:
        changed.write("\n# changed\n")
    assert code_package.source_sha256(tmp_path) != before
    (tmp_path / "panorama_app" / "README.md").write_text("not copied into the image")
    (tmp_path / "panorama_app" / "metrics.py").write_bytes((ROOT / "panorama_app" / "metrics.py").read_bytes())
    assert code_package.source_sha256(tmp_path) == before, "a file the Dockerfile does not copy changes nothing"


# --- the local build ----------------------------------------------------------------------------------------


def _members(asset: Path) -> dict[str, bytes]:
    with tarfile.open(asset, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]


def test_the_local_build_is_deterministic_and_marked(tmp_path: Path) -> None:
    first = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path / "a")
    second = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path / "b")
    assert first.asset == second.asset == f"{first.sha256}.tar.gz"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    members = _members(first.path)
    assert members["panorama/app.py"] == (ROOT / "panorama_app" / "device_entry.py").read_bytes()
    assert "panorama/panorama_app/postprocess.py" in members
    marker = json.loads(members[code_package.LOCAL_MARKER])
    assert marker["source_sha256"] == code_package.source_sha256(ROOT)
    assert json.loads((tmp_path / "a" / code_package.ASSET_INFO).read_text()) == {
        "asset": first.asset,
        "kind": "local",
        "sha256": first.sha256,
        "source_sha256": first.source_sha256,
    }
    assert code_package.read_asset(tmp_path / "a") == first


def test_a_built_folder_is_checked_before_it_is_registered(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such folder"):
        code_package.read_asset(tmp_path / "missing")
    with pytest.raises(RunError, match=r"no code-asset\.json there"):
        code_package.read_asset(tmp_path)
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path / "built")
    built.path.write_bytes(b"tampered")
    with pytest.raises(RunError, match=f"{built.asset} has sha256 {hashlib.sha256(b'tampered').hexdigest()}"):
        code_package.read_asset(tmp_path / "built")
    built.path.unlink()
    with pytest.raises(RunError, match=r"named in code-asset\.json, is missing"):
        code_package.read_asset(tmp_path / "built")


# --- the Docker build, through a test double of the docker CLI ----------------------------------------------


class FakeDocker:
    """Answers the docker CLI's calls; ``export -o`` writes a small filesystem tar."""

    def __init__(self, platforms: str = "linux/amd64, linux/arm64", fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.platforms, self.fail = platforms, fail

    def __call__(self, argv: Sequence[str], capture: bool) -> str:
        argv = list(argv)
        self.calls.append(argv)
        verb = " ".join(argv[1:3])
        if self.fail and verb.startswith(self.fail):
            raise code_package.CommandFailed(argv, 1, f"{self.fail} failed")
        if verb == "buildx inspect":
            return f"Name: default\nPlatforms: {self.platforms}\n"
        if argv[1] == "create":
            return "c0ffee\n"
        if argv[1] == "export":
            target = Path(argv[argv.index("-o") + 1])
            with tarfile.open(target, "w") as archive:
                entry = tarfile.TarInfo("panorama/app.py")
                body = b"print('app')\n"
                entry.size = len(body)
                archive.addfile(entry, io.BytesIO(body))
        return ""


def _docker(runner: FakeDocker, present: bool = True) -> code_package.DockerBuilder:
    return code_package.DockerBuilder(runner=runner, which=lambda name: "/usr/bin/docker" if present else None)


def test_docker_builds_for_arm64_exports_a_created_container_and_names_the_gzip_by_its_sha256(tmp_path: Path) -> None:
    docker = FakeDocker()
    built = code_package.build(_docker(docker), ROOT, tmp_path)
    verbs = [" ".join(c[1:3]) for c in docker.calls]
    assert verbs == [
        "info --format",
        "buildx version",
        "buildx inspect",
        "buildx build",
        "create --platform",
        "export -o",
        "rm c0ffee",
    ]
    build = docker.calls[3]
    assert build[build.index("--platform") + 1] == "linux/arm64" and "--load" in build
    assert build[build.index("-f") + 1] == str(ROOT / "panorama_app" / "Dockerfile") and build[-1] == str(ROOT)
    assert docker.calls[4][-3:] == [code_package.IMAGE_TAG, "python3", "/panorama/app.py"]
    assert docker.calls[5][-1] == "c0ffee"
    assert built.kind == "container" and built.asset == f"{built.sha256}.tar.gz"
    raw = built.path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == built.sha256
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime 0: the same export gives the same sha256"
    assert _members(built.path) == {"panorama/app.py": b"print('app')\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built.asset, code_package.ASSET_INFO])


def test_the_container_is_removed_even_when_the_export_fails(tmp_path: Path) -> None:
    docker = FakeDocker(fail="export")
    with pytest.raises(RunError, match=r"docker export -o .* c0ffee exited 1: export failed"):
        _docker(docker).build_asset(ROOT, tmp_path)
    assert docker.calls[-1] == ["/usr/bin/docker", "rm", "c0ffee"]


@pytest.mark.parametrize(
    ("present", "docker", "said"),
    [
        (False, FakeDocker(), "no docker command on PATH: building the code package needs Docker with buildx"),
        (True, FakeDocker(fail="info"), "the Docker daemon is not reachable (/usr/bin/docker info"),
        (True, FakeDocker(fail="buildx version"), "docker buildx is not installed"),
        (True, FakeDocker(platforms="linux/amd64"), "the buildx builder cannot build linux/arm64: "),
    ],
)
def test_without_docker_it_says_what_it_needs(present: bool, docker: FakeDocker, said: str, tmp_path: Path) -> None:
    with pytest.raises(RunError) as error:
        _docker(docker, present).build_asset(ROOT, tmp_path)
    assert said in str(error.value) and error.value.exit_code == exit_codes.USAGE
    assert "arm64 emulation" in str(error.value) and "CodeBuild" in str(error.value)
    assert not any(c[1] == "build" or c[1:3] == ["buildx", "build"] for c in docker.calls), "nothing was built"


# --- the build cache and registration, against moto and the Panorama Stubber ----------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto S3/STS in us-east-1 with the artifacts and package storage buckets; no local AWS."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (ARTIFACTS, STORE, "build-cache"):
            s3.create_bucket(Bucket=bucket)
        yield s3


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The Panorama client ``register`` makes, wrapped in a Stubber (no call left unused)."""
    client = panorama.new_client("us-east-1")
    monkeypatch.setattr(panorama, "new_client", lambda region=None: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


class CountingBuilder(code_package.LocalBuilder):
    def __init__(self) -> None:
        self.builds = 0

    def build_asset(self, context: Path, out_dir: Path) -> Path:
        self.builds += 1
        return super().build_asset(context, out_dir)


def test_the_cache_rebuilds_only_when_the_sources_changed(aws: Any, tmp_path: Path) -> None:
    builder, said = CountingBuilder(), list[str]()
    first = code_package.build_cached(builder, ROOT, tmp_path / "1", "s3://build-cache/code/", said.append)
    folder = f"code/{code_package.source_sha256(ROOT)}/"
    assert {o["Key"] for o in aws.list_objects_v2(Bucket="build-cache")["Contents"]} == {
        f"{folder}{first.asset}",
        f"{folder}{code_package.ASSET_INFO}",
    }
    again = code_package.build_cached(builder, ROOT, tmp_path / "2", "s3://build-cache/code", said.append)
    assert builder.builds == 1 and again.sha256 == first.sha256 and again.path.read_bytes() == first.path.read_bytes()
    assert said[-1].startswith("panorama_app/ unchanged (source ")
    docker = FakeDocker()
    other = code_package.build_cached(_docker(docker), ROOT, tmp_path / "3", "s3://build-cache/code/", said.append)
    assert other.kind == "container" and docker.calls, "a local build is never reused for a container one"


@pytest.mark.parametrize("uri", ["build-cache/code/", "s3:///code/", "https://build-cache/code/"])
def test_the_cache_must_be_an_s3_location(uri: str) -> None:
    with pytest.raises(RunError, match="must be an S3 location, s3://<bucket>/<prefix>/"):
        code_package.parse_cache(uri)


def _version(status: str, patch: str = "p", description: str | None = None) -> dict[str, Any]:
    response = {
        "IsLatestPatch": True,
        "PackageId": "pkg-code",
        "PackageName": CODE_PACKAGE,
        "PackageVersion": "1.0",
        "PatchVersion": patch,
        "Status": status,
    }
    return {**response, **({"StatusDescription": description} if description else {})}


def _register(stub: Stubber, statuses: Sequence[str], *, exists: bool = False) -> None:
    """The calls of one registration: find the package, no such patch yet, register, poll ``statuses``."""
    if exists:
        stub.add_response("describe_package", DESCRIBED_PACKAGE, {"PackageId": f"packageName/{CODE_PACKAGE}"})
    else:
        stub.add_client_error("describe_package", "ResourceNotFoundException", http_status_code=404)
        stub.add_response(
            "create_package",
            {"PackageId": "pkg-code", "Arn": DESCRIBED_PACKAGE["Arn"], "StorageLocation": LOCATION},
            {"PackageName": CODE_PACKAGE},
        )
    version = {"PackageId": "pkg-code", "PackageVersion": "1.0", "PatchVersion": ANY}
    stub.add_client_error("describe_package_version", "ResourceNotFoundException", http_status_code=404)
    stub.add_response("register_package_version", {}, {**version, "MarkLatest": True})
    for status in statuses:
        stub.add_response("describe_package_version", _version(status), version)


def _get(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=STORE, Key=key)["Body"].read())


def test_register_uploads_asset_descriptor_and_package_json_then_waits(aws: Any, stub: Stubber, tmp_path: Path) -> None:
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    _register(stub, ["REGISTER_PENDING", "REGISTER_PENDING", "REGISTER_COMPLETED"])
    said: list[str] = []
    done = code_package.register(CONFIG, built, say=said.append, sleep=lambda _: None)

    registration = done.registration
    assert done.status == "REGISTER_COMPLETED" and not done.reused and done.deregistered == []
    binaries, manifests = LOCATION["BinaryPrefixLocation"], LOCATION["ManifestPrefixLocation"]
    assert _get(aws, f"{binaries}/{built.asset}") == built.path.read_bytes()
    descriptor = json.loads(_get(aws, f"{binaries}/{registration.descriptor_sha256}.json"))
    assert descriptor["runtimeDescriptor"]["entry"] == {"path": "python3", "name": "/panorama/app.py"}
    manifest = _get(aws, f"{manifests}/1.0/{registration.patch_version}.json")
    assert hashlib.sha256(manifest).hexdigest() == registration.patch_version
    document = json.loads(manifest)
    assert schema_problems(PACKAGE, document) == [] and schema_problems(DESCRIPTOR, descriptor) == []
    (implementation,) = document["nodePackage"]["assets"][0]["implementations"]
    assert implementation == {
        "type": "container",
        "assetUri": built.asset,
        "descriptorUri": f"{registration.descriptor_sha256}.json",
    }
    assert aws.get_object_acl(Bucket=STORE, Key=f"{binaries}/{built.asset}")["Grants"], "bucket-owner-full-control"
    history = json.loads(aws.get_object(Bucket=ARTIFACTS, Key=history_key(CODE_PACKAGE))["Body"].read())
    assert history["patches"] == [{"package_version": "1.0", "patch_version": registration.patch_version}]
    assert said == [f"uploaded {built.asset} and registered patch {registration.patch_version[:12]}"]


def test_a_patch_registered_before_is_not_uploaded_again(aws: Any, stub: Stubber, tmp_path: Path) -> None:
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    stub.add_response("describe_package", DESCRIBED_PACKAGE, {"PackageId": f"packageName/{CODE_PACKAGE}"})
    for _ in range(2):  # the reuse check, then the wait
        stub.add_response("describe_package_version", _version("REGISTER_COMPLETED"))
    said: list[str] = []
    done = code_package.register(CONFIG, built, say=said.append, sleep=lambda _: None)
    assert done.reused and done.status == "REGISTER_COMPLETED"
    assert "Contents" not in aws.list_objects_v2(Bucket=STORE), "nothing uploaded"
    assert said[0].endswith("is registered already (REGISTER_COMPLETED): nothing uploaded")


def test_a_failed_registration_fails_the_command_with_the_service_reason(
    aws: Any, stub: Stubber, tmp_path: Path
) -> None:
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    _register(stub, [], exists=True)
    stub.add_response("describe_package_version", _version("FAILED", description="asset is not a container"))
    with pytest.raises(RunError) as error:
        code_package.register(CONFIG, built, say=lambda _: None, sleep=lambda _: None)
    assert error.value.exit_code == exit_codes.RUN_FAILED
    assert "registration FAILED: " in str(error.value) and "asset is not a container" in str(error.value)


def test_a_registration_still_pending_after_the_timeout_fails(aws: Any, stub: Stubber, tmp_path: Path) -> None:
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    _register(stub, ["REGISTER_PENDING", "REGISTER_PENDING"], exists=True)
    ticks = iter([0.0, 10.0, 10_000.0])
    with pytest.raises(RunError, match=r"still REGISTER_PENDING after \d+ s") as error:
        code_package.register(CONFIG, built, say=lambda _: None, sleep=lambda _: None, clock=lambda: next(ticks))
    assert error.value.exit_code == exit_codes.RUN_FAILED


def test_old_code_patches_are_trimmed_but_not_one_a_device_runs(aws: Any, stub: Stubber, tmp_path: Path) -> None:
    keep = CONFIG.runs.keep_package_versions
    old = [{"package_version": "1.0", "patch_version": f"old{i}"} for i in range(keep + 1)]
    aws.put_object(
        Bucket=ARTIFACTS,
        Key=history_key(CODE_PACKAGE),
        Body=json.dumps({"package_name": CODE_PACKAGE, "patches": old}),
    )
    graph = {
        "nodeGraph": {"packages": [{"name": f"123456789012::{CODE_PACKAGE}", "version": "1.0", "patchVersion": "old0"}]}
    }
    device = CONFIG.devices[0].id or CONFIG.devices[0].name
    aws.put_object(
        Bucket=ARTIFACTS, Key=f"deployments/{device}/last-good.json", Body=json.dumps({"manifest": json.dumps(graph)})
    )
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    _register(stub, ["REGISTER_COMPLETED"], exists=True)
    stub.add_response(
        "deregister_package_version", {}, {"PackageId": "pkg-code", "PackageVersion": "1.0", "PatchVersion": "old1"}
    )
    done = code_package.register(CONFIG, built, say=lambda _: None, sleep=lambda _: None)
    assert done.deregistered == ["old1"], "the oldest two are beyond the window; old0 is pinned by a device"


def test_without_the_storage_stack_nothing_is_trimmed_and_that_is_said(aws: Any, stub: Stubber, tmp_path: Path) -> None:
    aws.delete_bucket(Bucket=ARTIFACTS)
    built = code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    _register(stub, ["REGISTER_COMPLETED"], exists=True)
    done = code_package.register(CONFIG, built, say=lambda _: None, sleep=lambda _: None)
    assert done.trim_note == f"old patch versions not trimmed: no artifacts bucket {ARTIFACTS} yet (deploy the stacks)"


# --- the command ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_local_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setattr(local_state, "STATE_FILE", tmp_path_factory.mktemp("state") / "local.json")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--build-only"], "--build-only needs --output DIR"),
        (
            ["--build-only", "--output", "o", "--config", "c.yaml"],
            "--build-only registers nothing: it takes no --config",
        ),
        (["--cache", "s3://b/p/"], "--cache go with --build-only (to register a built asset: --asset DIR)"),
        (["--build-only", "--output", "o", "--cache", "b/p"], "must be an S3 location"),
        (["--role-arn", "arn:aws:iam::1:role/x"], "--role-arn 'arn:aws:iam::1:role/x': "),
    ],
)
def test_package_app_refuses_options_it_cannot_take(arguments: list[str], said: str, no_local_aws: None) -> None:
    result = cli.invoke(app, ["package-app", *arguments])
    assert result.exit_code == exit_codes.USAGE, result.output
    assert said in result.stderr


def test_package_app_without_docker_says_what_it_needs(
    no_local_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker command
    result = cli.invoke(app, ["package-app", "--build-only", "--output", str(tmp_path / "out")])
    assert result.exit_code == exit_codes.USAGE, result.output
    assert "no docker command on PATH: building the code package needs Docker with buildx" in result.stderr


def test_a_local_build_cannot_be_registered_in_aws(no_local_aws: None, tmp_path: Path) -> None:
    code_package.build(code_package.LocalBuilder(), ROOT, tmp_path)
    result = cli.invoke(app, ["package-app", "--config", str(ROOT / "config" / "dev.yaml"), "--asset", str(tmp_path)])
    assert result.exit_code == exit_codes.USAGE, result.output
    assert "a local build (no container image, made while the local AWS ran) cannot be registered in AWS" in (
        result.stderr
    )


def test_package_app_registers_a_built_asset(
    aws: Any, stub: Stubber, no_local_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = _docker(FakeDocker())
    monkeypatch.setattr(code_package, "DockerBuilder", lambda: docker)
    built = cli.invoke(app, ["package-app", "--build-only", "--output", str(tmp_path)])
    assert built.exit_code == 0, built.output
    asset = code_package.read_asset(tmp_path)
    assert f"container asset {asset.path}" in built.stdout
    _register(stub, ["REGISTER_COMPLETED"], exists=True)
    result = cli.invoke(app, ["package-app", "--config", str(ROOT / "config" / "dev.yaml"), "--asset", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"package: {CODE_PACKAGE}" in result.stdout and "status: REGISTER_COMPLETED" in result.stdout
    uploaded = gzip.decompress(_get(aws, f"{LOCATION['BinaryPrefixLocation']}/{asset.asset}"))
    assert b"panorama/app.py" in uploaded

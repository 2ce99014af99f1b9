"""Model package registration: S3 through moto, Panorama through a Stubber on the carried model."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from lambda_handlers import artifacts as artifacts_store
from lambda_handlers import package_registration as reg
from lambda_handlers import package_versions
from lambda_handlers import settings as cfg
from lambda_handlers.aws import panorama
from lambda_handlers.errors import InvalidInput, PackageRegistrationFailed, StepTimedOut, Throttled
from lambda_handlers.settings import StepSettings, install
from lambda_handlers.state import PackageSection
from panopipe.config import load_config
from panopipe.config.panorama_spec import application_spec
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec
from tests.conftest import ROOT
from tests.handlers.conftest import ACCOUNT, make_settings

ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
STORE = "panorama-storage-bucket"
MODEL = b"raw model bytes" * 1000
LOCATION = {
    "Bucket": STORE,
    "BinaryPrefixLocation": "123456789012/nodePackages/pkg-1/binaries",
    "ManifestPrefixLocation": "123456789012/nodePackages/pkg-1/manifests",
    "GeneratedPrefixLocation": "123456789012/nodePackages/pkg-1/generated",
    "RepoPrefixLocation": "123456789012/nodePackages/pkg-1/repo",
}
SPEC = application_spec(load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT))


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    for bucket in (ARTIFACTS, STORE):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=ARTIFACTS, Key="runs/r1/output/model.tar.gz", Body=MODEL)
    return client


def test_new_package_is_created_then_the_version_registered(s3: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_package",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params={"PackageId": f"packageName/{SPEC.model_package}"},
    )
    stub.add_response(
        "create_package",
        {
            "PackageId": "pkg-1",
            "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-1",
            "StorageLocation": LOCATION,
        },
        {"PackageName": SPEC.model_package},
    )
    stub.add_response(
        "register_package_version",
        {},
        {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY, "MarkLatest": True},
    )
    registration = reg.register_model(s3, SPEC, ARTIFACTS, "runs/r1/output/model.tar.gz")

    model_sha = hashlib.sha256(MODEL).hexdigest()
    assert registration["model_sha256"] == model_sha
    binaries = LOCATION["BinaryPrefixLocation"]
    assert s3.get_object(Bucket=STORE, Key=f"{binaries}/{model_sha}.tar.gz")["Body"].read() == MODEL
    descriptor = s3.get_object(Bucket=STORE, Key=f"{binaries}/{registration['descriptor_sha256']}.json")["Body"].read()
    assert hashlib.sha256(descriptor).hexdigest() == registration["descriptor_sha256"]
    assert json.loads(descriptor)["mlModelDescriptor"]["inputs"] == [{"name": "data", "shape": [1, 3, 28, 28]}]
    key = f"{LOCATION['ManifestPrefixLocation']}/1.0/{registration['patch_version']}.json"
    manifest = s3.get_object(Bucket=STORE, Key=key)["Body"].read()
    assert hashlib.sha256(manifest).hexdigest() == registration["patch_version"]
    implementation = json.loads(manifest)["nodePackage"]["assets"][0]["implementations"][0]
    assert implementation["assetUri"] == f"{model_sha}.tar.gz"


def test_existing_package_is_reused_and_registering_the_same_model_is_idempotent(s3: Any, stub: Stubber) -> None:
    described = {
        "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-1",
        "CreatedTime": "2026-01-01T00:00:00Z",
        "PackageId": "pkg-1",
        "PackageName": SPEC.model_package,
        "StorageLocation": LOCATION,
        "Tags": {},
    }
    patches = []
    for _ in range(2):
        stub.add_response("describe_package", described, {"PackageId": f"packageName/{SPEC.model_package}"})
        stub.add_response(
            "register_package_version",
            {},
            {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY, "MarkLatest": True},
        )
    for _ in range(2):
        patches.append(reg.register_model(s3, SPEC, ARTIFACTS, "runs/r1/output/model.tar.gz")["patch_version"])
    assert patches[0] == patches[1], "same model and spec give the same patch version"


def _described(status: str, description: str | None = None) -> dict[str, Any]:
    response = {
        "IsLatestPatch": True,
        "PackageId": "pkg-1",
        "PackageName": SPEC.model_package,
        "PackageVersion": "1.0",
        "PatchVersion": "abc",
        "Status": status,
    }
    if description:
        response["StatusDescription"] = description
    return response


REGISTRATION: PackageSection = {
    "package_id": "pkg-1",
    "package_name": SPEC.model_package,
    "package_version": "1.0",
    "patch_version": "abc",
    "model_sha256": "m" * 64,
    "descriptor_sha256": "d" * 64,
}


def test_status_polling(stub: Stubber) -> None:
    params = {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": "abc"}
    stub.add_response("describe_package_version", _described("REGISTER_PENDING"), params)
    stub.add_response("describe_package_version", _described("REGISTER_COMPLETED"), params)
    assert package_versions.registration_status(REGISTRATION) == "REGISTER_PENDING"
    assert package_versions.registration_status(REGISTRATION) == "REGISTER_COMPLETED"


def test_failed_registration_raises_with_the_service_description(stub: Stubber) -> None:
    stub.add_response("describe_package_version", _described("FAILED", "Invalid descriptor: unsupported framework"))
    with pytest.raises(PackageRegistrationFailed, match="patch abc: Invalid descriptor: unsupported framework"):
        package_versions.registration_status(REGISTRATION)


def test_old_patch_versions_beyond_the_window_are_deregistered(stub: Stubber) -> None:
    history = [{"package_version": "1.0", "patch_version": p} for p in ("p1", "p2", "p3", "p4", "abc")]
    for patch in ("p1", "p2"):
        stub.add_response(
            "deregister_package_version", {}, {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": patch}
        )
    assert package_versions.deregister_oldest(REGISTRATION, history, keep=3) == history[:2]


def test_stubber_rejects_a_request_the_real_api_would_reject() -> None:
    """The carried model is the contract: a wrong parameter fails before any response is used."""
    client = panorama.new_client("us-east-1")
    with Stubber(client) as stubber, pytest.raises(Exception, match=r"Unknown parameter|Parameter validation failed"):
        stubber.add_response("register_package_version", {})
        # Latest (not MarkLatest) is the mistake the carried model must catch; the typed client flags it too.
        client.register_package_version(PackageId="pkg-1", PackageVersion="1.0", PatchVersion="abc", Latest=True)  # type: ignore[call-arg]


# --- step handlers ---------------------------------------------------------------------------------

TEMPLATE_KEY = "panorama/application-manifest.json"
RUN = "ds-people-0123456789ab"
MODEL_URI = f"s3://{ARTIFACTS}/runs/{RUN}/output/model.tar.gz"


def template_document(spec: ApplicationSpec, account: str = ACCOUNT) -> dict[str, Any]:
    """What stacks/panorama_application.py stores (after CloudFormation substituted the account id)."""
    graph = documents.graph(spec, account)
    overrides = documents.camera_overrides(spec, account, graph)
    return {"spec": json.loads(spec.to_json()), "graph": graph, "overrides": overrides}


@pytest.fixture
def artifacts(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Artifacts and package-store buckets in moto, the template and a model stored, the env set."""
    monkeypatch.setenv(cfg.ARTIFACTS_BUCKET, ARTIFACTS)
    monkeypatch.setenv(cfg.MANIFEST_TEMPLATE_KEY, TEMPLATE_KEY)
    client = boto3.client("s3", region_name="us-east-1")
    for bucket in (ARTIFACTS, STORE):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=ARTIFACTS, Key=TEMPLATE_KEY, Body=json.dumps(template_document(SPEC)).encode())
    client.put_object(Bucket=ARTIFACTS, Key=f"runs/{RUN}/output/model.tar.gz", Body=MODEL)
    return client


def _run_state(**model: Any) -> dict[str, Any]:
    return {
        "run": {"name": RUN},
        "model": {
            "s3_uri": MODEL_URI,
            "framework": "MXNET",
            "framework_version": "1.8",
            "input_name": "data",
            "input_shape": [1, 3, 224, 224],
            **model,
        },
    }


def panorama_error(
    stub: Stubber, operation: str, code: str, message: str, status: int, params: dict[str, Any], resource: str
) -> None:
    """A modeled Panorama error (its required fields validated by the carried model)."""
    stub.add_client_error(
        operation,
        code,
        message,
        status,
        expected_params=params,
        modeled_fields={"Message": message, "ResourceId": resource, "ResourceType": "package-version"},
    )


def _register_responses(stub: Stubber, conflict: bool = False, exists: bool = True) -> None:
    stub.add_response(
        "describe_package",
        {
            "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-1",
            "CreatedTime": "2026-01-01T00:00:00Z",
            "PackageId": "pkg-1",
            "PackageName": SPEC.model_package,
            "StorageLocation": LOCATION,
            "Tags": {},
        },
        {"PackageId": f"packageName/{SPEC.model_package}"},
    )
    params = {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY, "MarkLatest": True}
    if not conflict:
        stub.add_response("register_package_version", {}, params)
        return
    panorama_error(stub, "register_package_version", "ConflictException", "Version exists", 409, params, "pkg-1")
    described = {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY}
    if exists:
        stub.add_response("describe_package_version", _described("REGISTER_PENDING"), described)
    else:
        panorama_error(
            stub, "describe_package_version", "ResourceNotFoundException", "No version", 404, described, "pkg-1"
        )


def test_register_step_registers_the_raw_model_with_the_input_of_the_run(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    _register_responses(stub)
    state = _run_state(framework="pytorch", input_name="input0", input_shape=[1, 3, 512, 512])
    before = int(time.time())

    result = reg.register_package(state)

    package = result["package"]
    assert package["status"] == "IN_PROGRESS" and package["polls"] == 0 and package["deregistered"] == []
    assert before + 1800 <= package["deadline"] <= int(time.time()) + 1800
    assert package["model_sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert {k: package[k] for k in ("package_id", "package_name", "package_version")} == {
        "package_id": "pkg-1",
        "package_name": SPEC.model_package,
        "package_version": "1.0",
    }
    binaries = LOCATION["BinaryPrefixLocation"]
    key = f"{binaries}/{package['descriptor_sha256']}.json"
    descriptor = json.loads(artifacts.get_object(Bucket=STORE, Key=key)["Body"].read())["mlModelDescriptor"]
    assert descriptor["framework"] == "PYTORCH"
    assert descriptor["inputs"] == [{"name": "input0", "shape": [1, 3, 512, 512]}]
    assert result["model"] == state["model"] and result["run"] == state["run"]


def test_register_step_retried_adopts_the_identical_registered_patch(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    _register_responses(stub)
    _register_responses(stub, conflict=True)
    first = reg.register_package(_run_state())
    second = reg.register_package(_run_state())
    assert second["package"]["patch_version"] == first["package"]["patch_version"]
    assert second["package"]["status"] == "IN_PROGRESS"


def test_conflict_for_a_patch_that_does_not_exist_is_not_adopted(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    _register_responses(stub, conflict=True, exists=False)
    with pytest.raises(ClientError, match="ConflictException"):
        reg.register_package(_run_state())


def test_register_step_rejects_a_model_uri_that_is_not_an_s3_object(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    with pytest.raises(InvalidInput, match="not an S3 object URI"):
        reg.register_package(_run_state(s3_uri="https://example.com/model.tar.gz"))


def _package_state(deadline_in: int = 600, **values: Any) -> dict[str, Any]:
    return {
        "run": {"name": RUN},
        "package": {
            **REGISTRATION,
            "model_sha256": "m" * 64,
            "descriptor_sha256": "d" * 64,
            "status": "IN_PROGRESS",
            "deadline": int(time.time()) + deadline_in,
            "polls": 2,
            "deregistered": [],
            **values,
        },
    }


PARAMS = {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": "abc"}


def test_check_step_pending_then_completed_records_the_patch_once(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    stub.add_response("describe_package_version", _described("REGISTER_PENDING"), PARAMS)
    for _ in range(2):
        stub.add_response("describe_package_version", _described("REGISTER_COMPLETED"), PARAMS)

    pending = reg.check_registration(_package_state())
    assert pending["package"]["status"] == "IN_PROGRESS" and pending["package"]["polls"] == 3
    done = reg.check_registration(pending)
    assert done["package"]["status"] == "SUCCEEDED" and done["package"]["deregistered"] == []
    reg.check_registration(pending)  # a retried check appends nothing twice

    history = json.loads(
        artifacts.get_object(Bucket=ARTIFACTS, Key=artifacts_store.history_key(SPEC.model_package))["Body"].read()
    )
    assert history["patches"] == [{"package_version": "1.0", "patch_version": "abc"}]


def test_check_step_deregisters_beyond_the_window_but_spares_a_last_good_patch(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    install(make_settings({"runs.keep_package_versions": 3, "devices": [{"id": "device-1"}]}))
    old = [("0.9", "p0"), ("1.0", "p1"), ("1.0", "p2"), ("1.0", "p3"), ("1.0", "p4")]
    artifacts_store.write_json(
        artifacts,
        ARTIFACTS,
        artifacts_store.history_key(SPEC.model_package),
        {"patches": [{"package_version": v, "patch_version": p} for v, p in old]},
    )
    artifacts_store.write_json(
        artifacts,
        ARTIFACTS,
        artifacts_store.last_good_key("device-1"),
        {"package": {**REGISTRATION, "patch_version": "p1"}, "manifest": "{}", "overrides": "{}"},
    )
    stub.add_response("describe_package_version", _described("REGISTER_COMPLETED"), PARAMS)
    p0 = {"PackageId": "pkg-1", "PackageVersion": "0.9", "PatchVersion": "p0"}
    # p0 was deregistered by hand already: counts as removed
    panorama_error(stub, "deregister_package_version", "ResourceNotFoundException", "Gone", 404, p0, "p0")
    stub.add_response(
        "deregister_package_version", {}, {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": "p2"}
    )

    done = reg.check_registration(_package_state())

    assert done["package"]["status"] == "SUCCEEDED"
    assert done["package"]["deregistered"] == ["p0", "p2"]
    key = artifacts_store.history_key(SPEC.model_package)
    history = json.loads(artifacts.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read())
    assert [e["patch_version"] for e in history["patches"]] == ["p1", "p3", "p4", "abc"]


def test_check_step_raises_for_a_failed_registration(artifacts: Any, stub: Stubber, settings: StepSettings) -> None:
    stub.add_response("describe_package_version", _described("FAILED", "Asset not found"), PARAMS)
    with pytest.raises(PackageRegistrationFailed, match="patch abc: Asset not found"):
        reg.check_registration(_package_state())


def test_check_step_times_out(artifacts: Any, stub: Stubber, settings: StepSettings) -> None:
    stub.add_response("describe_package_version", _described("REGISTER_PENDING"), PARAMS)
    with pytest.raises(StepTimedOut, match="still REGISTER_PENDING after 1800 s"):
        reg.check_registration(_package_state(deadline_in=-1))


def test_check_step_throttling_becomes_throttled(artifacts: Any, stub: Stubber, settings: StepSettings) -> None:
    stub.add_client_error("describe_package_version", "ThrottlingException", "slow down", 429)
    with pytest.raises(Throttled):
        reg.check_registration(_package_state())


def test_a_patch_the_service_refuses_to_deregister_stays_in_the_history(
    artifacts: Any, stub: Stubber, settings: StepSettings
) -> None:
    install(make_settings({"runs.keep_package_versions": 1}))
    key = artifacts_store.history_key(SPEC.model_package)
    artifacts_store.write_json(
        artifacts, ARTIFACTS, key, {"patches": [{"package_version": "1.0", "patch_version": "p1"}]}
    )
    stub.add_response("describe_package_version", _described("REGISTER_COMPLETED"), PARAMS)
    p1 = {**PARAMS, "PatchVersion": "p1"}
    panorama_error(stub, "deregister_package_version", "ConflictException", "In use", 409, p1, "p1")

    done = reg.check_registration(_package_state())

    assert done["package"]["status"] == "SUCCEEDED" and done["package"]["deregistered"] == []
    history = json.loads(artifacts.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read())
    assert [e["patch_version"] for e in history["patches"]] == ["p1", "abc"]


def test_a_template_naming_other_packages_than_the_stack_is_refused(
    artifacts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drift between the application stack's template and the pipeline stack's packages stops the run."""
    from panorama_app.manifest.rules import ManifestError

    artifacts_store.write_json(artifacts, ARTIFACTS, "panorama/application-manifest.json", template_document(SPEC))
    monkeypatch.setenv("MODEL_PACKAGE_NAME", "someone_elses_model")
    with pytest.raises(ManifestError, match="'someone_elses_model': deploy all stacks"):
        artifacts_store.load_template(artifacts, ARTIFACTS, "panorama/application-manifest.json")
    monkeypatch.setenv("MODEL_PACKAGE_NAME", SPEC.model_package)
    assert artifacts_store.load_template(artifacts, ARTIFACTS, "panorama/application-manifest.json").spec == SPEC

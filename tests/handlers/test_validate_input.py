"""validate_input: the three sources against moto's S3 and SageMaker, the inputs it refuses, and the
code package it requires registered (Panorama through a Stubber on the carried model)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import validate_input
from lambda_handlers.errors import InvalidInput
from lambda_handlers.settings import ARTIFACTS_BUCKET, DATA_BUCKET, MANIFEST_TEMPLATE_KEY, install
from lambda_handlers.state import PackageRef
from tests.handlers.conftest import REGION, make_settings, manifest_lines, recordio, sagemaker_backend
from tests.handlers.test_package_registration import SPEC, TEMPLATE_KEY, template_document

DATA = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
ELSEWHERE = "aws-panorama-someone-else"  # a Panorama-readable bucket that is not the data bucket
PLAIN = "my-plain-models"  # a bucket without aws-panorama in its name
RUN = {"name": "ds-d1-0123456789ab", "started": "2026-11-30T10:00:00Z"}
MODEL_URI = f"s3://{ARTIFACTS}/imported/resnet/model.tar.gz"
CODE_PATCH = "c" * 64
CODE_PACKAGE: PackageRef = {
    "package_id": "package-code",
    "package_name": SPEC.code_package,
    "package_version": SPEC.package_version,
    "patch_version": CODE_PATCH,
}


@pytest.fixture
def s3(aws: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The buckets and data; the code package is taken as registered (its own tests are at the end)."""
    monkeypatch.setenv(DATA_BUCKET, DATA)
    monkeypatch.setenv(ARTIFACTS_BUCKET, ARTIFACTS)
    monkeypatch.setattr(validate_input, "registered_code_package", lambda: CODE_PACKAGE)
    client = boto3.client("s3", region_name=REGION)
    for bucket in (DATA, ARTIFACTS, ELSEWHERE, PLAIN):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=DATA, Key="datasets/d1/train/part-0.rec", Body=recordio(b"a", b"bb", b"ccc"))
    client.put_object(Bucket=DATA, Key="datasets/d1/validation/part-0.rec", Body=recordio(b"v"))
    client.put_object(
        Bucket=DATA, Key="datasets/m1/train.manifest", Body=manifest_lines("s3://x/a.jpg", "s3://x/b.jpg")
    )
    client.put_object(Bucket=DATA, Key="datasets/m1/validation.manifest", Body=manifest_lines("s3://x/c.jpg"))
    client.put_object(Bucket=ARTIFACTS, Key="imported/resnet/model.tar.gz", Body=b"model")
    client.put_object(Bucket=PLAIN, Key="model.tar.gz", Body=b"model")
    yield client


def run(given: Any) -> Any:
    return validate_input.validate_input({"input": given, "run": RUN})


def refused(given: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        run(given)
    return str(caught.value)


def training_job(name: str, output: str = f"s3://{ARTIFACTS}/external/") -> str:
    """A training job in moto (Completed at once); returns its artifact's URI."""
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/sagemaker",
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{DATA}/x/"}},
            }
        ],
        OutputDataConfig={"S3OutputPath": output},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    return f"{output}{name}/output/model.tar.gz"


# --- the three sources ---------------------------------------------------------------------------


@pytest.mark.parametrize("uri", [f"s3://{DATA}/datasets/d1/", f"s3://{DATA}/datasets/d1"])
def test_dataset_prefix_with_both_channels(s3: Any, uri: str) -> None:
    state = run({"dataset": uri})

    assert state["source"] == {
        "kind": "dataset",
        "uri": f"s3://{DATA}/datasets/d1/",
        "bucket": DATA,
        "prefix": "datasets/d1/",
        "s3_data_type": "S3Prefix",
        "channels": {
            "train": f"s3://{DATA}/datasets/d1/train/",
            "validation": f"s3://{DATA}/datasets/d1/validation/",
        },
        "train_records": 3,  # counted: the built-in algorithm's num_training_samples
    }
    assert state["run"] == RUN
    assert state["input"] == {"dataset": uri}
    assert "model" not in state  # training produces it


def test_dataset_manifest_pair(s3: Any) -> None:
    state = run({"dataset": f"s3://{DATA}/datasets/m1/train.manifest"})

    assert state["source"] == {
        "kind": "dataset",
        "uri": f"s3://{DATA}/datasets/m1/train.manifest",
        "bucket": DATA,
        "prefix": "datasets/m1/",
        "s3_data_type": "AugmentedManifestFile",
        "channels": {
            "train": f"s3://{DATA}/datasets/m1/train.manifest",
            "validation": f"s3://{DATA}/datasets/m1/validation.manifest",
        },
        "train_records": 2,
    }


def test_model_defaults_to_the_configured_description(s3: Any) -> None:
    state = run({"model": MODEL_URI})

    assert state["source"] == {"kind": "model", "s3_uri": MODEL_URI}
    assert state["model"] == {
        "s3_uri": MODEL_URI,
        "framework": "MXNET",
        "framework_version": "1.8",
        "input_name": "data",
        "input_shape": [1, 3, 28, 28],
    }
    assert state["run"] == RUN


def test_model_with_its_own_framework_and_shape(s3: Any) -> None:
    state = run(
        {
            "model": MODEL_URI,
            "framework": "tensorflow",
            "framework_version": "2.4",
            "input_shape": [1, 300, 300, 3],
            "input_name": "input_1:0",
        }
    )

    assert state["model"] == {
        "s3_uri": MODEL_URI,
        "framework": "TENSORFLOW",
        "framework_version": "2.4",
        "input_name": "input_1:0",
        "input_shape": [1, 300, 300, 3],
    }


def test_completed_training_job(s3: Any) -> None:
    artifact = training_job("people-classifier-2026-11-01")
    s3.put_object(Bucket=ARTIFACTS, Key=artifact.split(f"{ARTIFACTS}/", 1)[1], Body=b"model")

    state = run({"training_job": "people-classifier-2026-11-01"})

    assert state["source"] == {"kind": "training_job", "job_name": "people-classifier-2026-11-01"}
    assert state["model"] == {
        "s3_uri": artifact,
        "framework": "MXNET",
        "framework_version": "1.8",
        "input_name": "data",
        "input_shape": [1, 3, 28, 28],
    }


# --- what it refuses -----------------------------------------------------------------------------


def test_refuses_input_naming_no_source(s3: Any) -> None:
    assert refused({}) == ("input.<root> = []: names no source; give exactly one of dataset, model, training_job")


def test_refuses_input_naming_two_sources(s3: Any) -> None:
    assert refused({"dataset": f"s3://{DATA}/datasets/d1/", "model": MODEL_URI}) == (
        "input.<root> = ['dataset', 'model']: names 2 sources (dataset, model); "
        "give exactly one of dataset, model, training_job"
    )


def test_refuses_a_non_object_input(s3: Any) -> None:
    assert "the execution input must be a JSON object" in refused(f"s3://{DATA}/datasets/d1/")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"dataset": f"s3://{DATA}/datasets/d1/", "epochs": 3},
            "input.epochs = 3: unknown field with dataset (allowed: dataset)",
        ),
        (
            {"dataset": f"s3://{DATA}/datasets/d1/", "framework": "MXNET"},
            "input.framework = 'MXNET': unknown field with dataset (allowed: dataset)",
        ),
        (
            {"model": MODEL_URI, "input_size": 224},
            "input.input_size = 224: unknown field with model "
            "(allowed: model, framework, framework_version, input_shape, input_name)",
        ),
    ],
)
def test_refuses_unknown_fields(s3: Any, given: dict[str, Any], message: str) -> None:
    assert refused(given) == message


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"dataset": "https://example.com/d1/"}, "is not a valid s3:// URI"),
        ({"dataset": "s3:/aws-panorama-x/d1/"}, "is not a valid s3:// URI"),
        ({"dataset": ""}, "must be an s3:// URI"),
        ({"dataset": 42}, "must be an s3:// URI"),
        ({"model": "s3://AWS-PANORAMA-Upper/model.tar.gz"}, "bucket name in lower case"),
    ],
)
def test_refuses_malformed_uris(s3: Any, given: dict[str, Any], message: str) -> None:
    assert message in refused(given)


def test_refuses_a_bucket_without_aws_panorama(s3: Any) -> None:
    assert refused({"model": f"s3://{PLAIN}/model.tar.gz"}) == (
        f"input.model = 's3://{PLAIN}/model.tar.gz': bucket '{PLAIN}' lacks 'aws-panorama' in its name; "
        "the pipeline and the Panorama service may read only *aws-panorama* buckets"
    )


def test_refuses_a_dataset_outside_the_data_bucket(s3: Any) -> None:
    assert refused({"dataset": f"s3://{ELSEWHERE}/datasets/d1/"}) == (
        f"input.dataset = 's3://{ELSEWHERE}/datasets/d1/': data sets must be in the pipeline's data bucket {DATA!r}"
    )


def test_refuses_a_missing_dataset(s3: Any) -> None:
    assert refused({"dataset": f"s3://{DATA}/datasets/nothing-here/"}) == (
        f"input.dataset = 's3://{DATA}/datasets/nothing-here/': the train channel "
        f"s3://{DATA}/datasets/nothing-here/train/ holds no data "
        "(a prepared data set needs objects under train/, validation/; a raw one, <class>/ folders of "
        ".jpg/.jpeg/.png images)"
    )


def test_refuses_a_dataset_whose_validation_channel_has_only_folder_markers_and_empty_files(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/d2/train/part-0.rec", Body=recordio(b"x"))
    s3.put_object(Bucket=DATA, Key="datasets/d2/validation/", Body=b"")
    s3.put_object(Bucket=DATA, Key="datasets/d2/validation/empty.rec", Body=b"")

    message = refused({"dataset": f"s3://{DATA}/datasets/d2/"})

    assert f"the validation channel s3://{DATA}/datasets/d2/validation/ holds no data" in message


def test_a_manifest_not_named_train_manifest_is_a_raw_ground_truth_manifest(s3: Any) -> None:
    # Its own tests (prepared by the preparation step) are in test_preparation_input.py.
    assert refused({"dataset": f"s3://{DATA}/datasets/m1/all.manifest"}) == (
        f"input.dataset = 's3://{DATA}/datasets/m1/all.manifest': the Ground Truth manifest "
        f"s3://{DATA}/datasets/m1/all.manifest does not exist"
    )


def test_refuses_a_manifest_without_its_validation_manifest(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/m2/train.manifest", Body=b"[]")

    assert refused({"dataset": f"s3://{DATA}/datasets/m2/train.manifest"}) == (
        f"input.dataset = 's3://{DATA}/datasets/m2/train.manifest': the validation channel's manifest "
        f"s3://{DATA}/datasets/m2/validation.manifest does not exist"
    )


def test_refuses_an_empty_manifest(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/m3/train.manifest", Body=b"")

    assert "the train channel's manifest" in refused({"dataset": f"s3://{DATA}/datasets/m3/train.manifest"})
    assert "is empty" in refused({"dataset": f"s3://{DATA}/datasets/m3/train.manifest"})


def test_refuses_a_missing_model_artifact(s3: Any) -> None:
    uri = f"s3://{ARTIFACTS}/imported/missing/model.tar.gz"
    assert refused({"model": uri}) == f"input.model = {uri!r}: the model archive {uri} does not exist"


def test_refuses_an_empty_model_artifact(s3: Any) -> None:
    s3.put_object(Bucket=ARTIFACTS, Key="imported/empty/model.tar.gz", Body=b"")
    uri = f"s3://{ARTIFACTS}/imported/empty/model.tar.gz"
    assert refused({"model": uri}) == f"input.model = {uri!r}: the model archive {uri} is empty"


def test_refuses_a_model_outside_the_buckets_the_sagemaker_role_reads(s3: Any) -> None:
    uri = f"s3://{ELSEWHERE}/model.tar.gz"
    assert refused({"model": uri}) == (
        f"input.model = {uri!r}: must be in the pipeline's data bucket {DATA!r} or artifacts bucket "
        f"{ARTIFACTS!r}, the only buckets its SageMaker role reads: copy the model there first"
    )


def test_refuses_a_model_that_is_not_an_archive(s3: Any) -> None:
    uri = f"s3://{ARTIFACTS}/imported/resnet/model.params"
    assert "must name a model archive ending in .tar.gz" in refused({"model": uri})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"framework": "ONNX"}, "input.framework = 'ONNX': must be one of MXNET, PYTORCH, TENSORFLOW"),
        (
            {"framework_version": "1.9"},
            "input.framework_version = '1.9': SageMaker Neo compiles MXNET for the appliance only in versions 1.8 "
            "(give it as a string)",
        ),
        ({"framework_version": 1.8}, "input.framework_version = 1.8: SageMaker Neo compiles MXNET"),
        (
            {"framework": "PYTORCH", "input_shape": [1, 3, 224, 224]},
            "input.framework_version = None: is required when framework differs from the configured one (MXNET)",
        ),
        (
            {"input_shape": [3, 224, 224]},
            "input.input_shape = [3, 224, 224]: must have 4 dimensions, [N, C, H, W] or [N, H, W, C]; got 3",
        ),
        (
            {"input_shape": [1, 3, 0, 224]},
            "input.input_shape = [1, 3, 0, 224]: every dimension must be a positive integer",
        ),
        (
            {"input_shape": [1, 224, 224, 3]},
            "input.input_shape = [1, 224, 224, 3]: MXNET takes NCHW input [N, C, H, W] with C = 1 or 3 "
            "(this looks like NHWC)",
        ),
        (
            {"framework": "TENSORFLOW", "framework_version": "2.4", "input_shape": [1, 3, 224, 224]},
            "input.input_shape = [1, 3, 224, 224]: TENSORFLOW takes NHWC input [N, H, W, C] with C = 1 or 3; "
            "got C = 224",
        ),
        (
            {"input_shape": [1, 3, 224224, 224]},
            "input.input_shape = [1, 3, 224224, 224]: every dimension must be at most 8192",
        ),
        (
            {"input_name": "1data"},
            "input.input_name = '1data': a tensor name: letters, digits, _ . : starting with a letter or _",
        ),
    ],
)
def test_refuses_a_model_description_that_neo_cannot_compile(s3: Any, fields: dict[str, Any], message: str) -> None:
    assert message in refused({"model": MODEL_URI, **fields})


def test_reports_every_broken_model_field_at_once(s3: Any) -> None:
    message = refused({"model": MODEL_URI, "framework": "ONNX", "input_name": "", "input_shape": [1]})

    assert message.count("; input.") == 2
    assert "input.framework = 'ONNX'" in message
    assert "input.input_name = ''" in message
    assert "input.input_shape = [1]" in message


def test_refuses_an_unknown_training_job(s3: Any) -> None:
    assert refused({"training_job": "never-ran"}) == (
        "input.training_job = 'never-ran': no such training job in this account and region"
    )


def test_refuses_a_malformed_training_job_name(s3: Any) -> None:
    assert "must be a SageMaker training job name" in refused({"training_job": "bad_name!"})


@pytest.mark.parametrize(("status", "reason"), [("Failed", "AlgorithmError: out of memory"), ("InProgress", None)])
def test_refuses_a_training_job_that_did_not_complete(s3: Any, status: str, reason: str | None) -> None:
    training_job("earlier-run")
    job = sagemaker_backend().training_jobs["earlier-run"]
    job.training_job_status = status
    job.failure_reason = reason

    expected = f"input.training_job = 'earlier-run': the job is {status}, not Completed"
    assert refused({"training_job": "earlier-run"}) == expected + (f": {reason}" if reason else "")


def test_refuses_a_training_job_whose_artifact_panorama_cannot_read(s3: Any) -> None:
    artifact = training_job("plain-output", output=f"s3://{PLAIN}/jobs/")

    assert refused({"training_job": "plain-output"}) == (
        f"input.training_job = 'plain-output': its model artifact {artifact}: bucket '{PLAIN}' lacks 'aws-panorama' "
        "in its name; the pipeline and the Panorama service may read only *aws-panorama* buckets"
    )


def test_refuses_a_training_job_whose_artifact_is_gone(s3: Any) -> None:
    artifact = training_job("artifact-deleted")  # moto writes no artifact

    assert refused({"training_job": "artifact-deleted"}) == (
        f"input.training_job = 'artifact-deleted': the model archive {artifact} does not exist"
    )


def test_a_huge_input_value_is_shown_bounded_with_its_size(s3: Any) -> None:
    """A 1M-element input_shape once made a 3 MB error: the message shows the start and the size."""
    message = refused({"model": MODEL_URI, "input_shape": [1] * 1_000_000})
    assert len(message) < 600
    assert "input.input_shape = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ...] (1000000 items)" in message
    assert "got 1000000" in message
    long_name = refused({"model": MODEL_URI, "input_name": "x" * 100_000})
    assert len(long_name) < 600 and "(100000 characters)" in long_name


# --- the train channel's sample count (the built-in algorithm's num_training_samples) ------------


def test_every_recordio_file_of_the_train_channel_is_counted(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/d1/train/part-1.rec", Body=recordio(b"d" * 5, b"e" * 9, split=True))
    s3.put_object(Bucket=DATA, Key="datasets/d1/train/", Body=b"")  # a folder marker is no file
    assert run({"dataset": f"s3://{DATA}/datasets/d1/"})["source"]["train_records"] == 5


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 20, "no RecordIO record header at byte 0"),
        (recordio(b"abcd")[:-2], "the file ends inside a record (at byte 10)"),
        (recordio(b"ab") + b"junk-after", "no RecordIO record header at byte 12"),
    ],
)
def test_a_train_file_that_is_not_recordio_is_refused_by_name(s3: Any, body: bytes, problem: str) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/d1/train/photo.png", Body=body)
    message = refused({"dataset": f"s3://{DATA}/datasets/d1/"})
    assert f"s3://{DATA}/datasets/d1/train/photo.png: {problem}" in message
    assert "the built-in image-classification algorithm reads RecordIO (.rec) files" in message


def test_a_manifest_with_no_records_is_refused(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/m4/train.manifest", Body=b"\n \n")
    s3.put_object(Bucket=DATA, Key="datasets/m4/validation.manifest", Body=manifest_lines("s3://x/a.jpg"))
    assert "holds no training samples" in refused({"dataset": f"s3://{DATA}/datasets/m4/train.manifest"})


def test_script_mode_counts_nothing_and_refuses_a_manifest(s3: Any) -> None:
    install(make_settings(config="tests/configs/script.yaml"))
    assert run({"dataset": f"s3://{DATA}/datasets/d1/"})["source"]["train_records"] is None
    assert "script mode trains from S3 prefixes" in refused({"dataset": f"s3://{DATA}/datasets/m1/train.manifest"})


# --- the code package the run will deploy: registered, or the run is refused now ---------------------


@pytest.fixture
def template(aws: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Only the stored manifest template (which names the code package and its version)."""
    monkeypatch.setenv(DATA_BUCKET, DATA)
    monkeypatch.setenv(ARTIFACTS_BUCKET, ARTIFACTS)
    monkeypatch.setenv(MANIFEST_TEMPLATE_KEY, TEMPLATE_KEY)
    client = boto3.client("s3", region_name=REGION)
    for bucket in (DATA, ARTIFACTS):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=ARTIFACTS, Key=TEMPLATE_KEY, Body=json.dumps(template_document(SPEC)).encode())
    client.put_object(Bucket=ARTIFACTS, Key="imported/resnet/model.tar.gz", Body=b"model")
    return client


def _code_package(stub: Stubber, status: str | None, description: str | None = None) -> None:
    """DescribePackage by name, then DescribePackageVersion without a patch (the latest); None: never registered."""
    by_name = {"PackageId": f"packageName/{SPEC.code_package}"}
    stub.add_response(
        "describe_package",
        {
            "PackageId": "package-code",
            "PackageName": SPEC.code_package,
            "Arn": f"arn:aws:panorama:{REGION}:123456789012:package/package-code",
            "StorageLocation": {
                "Bucket": "store",
                "BinaryPrefixLocation": "b",
                "ManifestPrefixLocation": "m",
                "GeneratedPrefixLocation": "g",
                "RepoPrefixLocation": "r",
            },
            "CreatedTime": "2026-01-01T00:00:00Z",
            "Tags": {},
        },
        by_name,
    )
    latest = {"PackageId": "package-code", "PackageVersion": SPEC.package_version}
    if status is None:
        stub.add_client_error(
            "describe_package_version",
            "ResourceNotFoundException",
            "no version",
            404,
            expected_params=latest,
            modeled_fields={"Message": "no version", "ResourceId": "package-code", "ResourceType": "PackageVersion"},
        )
        return
    described = {
        "IsLatestPatch": True,
        "PackageId": "package-code",
        "PackageName": SPEC.code_package,
        "PackageVersion": SPEC.package_version,
        "PatchVersion": CODE_PATCH,
        "Status": status,
        **({"StatusDescription": description} if description else {}),
    }
    stub.add_response("describe_package_version", described, latest)


def test_the_registered_code_package_is_recorded_for_the_deploy_step(template: Any, stub: Stubber) -> None:
    _code_package(stub, "REGISTER_COMPLETED")
    state = validate_input.validate_input({"input": {"model": MODEL_URI}, "run": RUN})
    assert state["code_package"] == CODE_PACKAGE
    assert state["source"] == {"kind": "model", "s3_uri": MODEL_URI}


def test_a_code_package_never_registered_fails_the_run_before_anything_starts(template: Any, stub: Stubber) -> None:
    _code_package(stub, None)
    with pytest.raises(InvalidInput) as caught:
        validate_input.validate_input({"input": {"model": MODEL_URI}, "run": RUN})
    assert str(caught.value) == (
        f"code package {SPEC.code_package} {SPEC.package_version} has no registered version: "
        "run `panopipe package-app --config <file>`"
    )


def test_a_code_package_that_does_not_exist_is_refused_the_same_way(template: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_package",
        "ResourceNotFoundException",
        "no package",
        404,
        expected_params={"PackageId": f"packageName/{SPEC.code_package}"},
    )
    with pytest.raises(InvalidInput, match="has no registered version: run `panopipe package-app"):
        validate_input.validate_input({"input": {"model": MODEL_URI}, "run": RUN})


@pytest.mark.parametrize(
    ("status", "description", "expected"),
    [
        ("REGISTER_PENDING", None, f"its latest patch {CODE_PATCH} is REGISTER_PENDING, not REGISTER_COMPLETED"),
        ("FAILED", "asset not found", "is FAILED (asset not found), not REGISTER_COMPLETED"),
    ],
)
def test_a_code_package_whose_latest_patch_is_not_completed_is_refused(
    template: Any, stub: Stubber, status: str, description: str | None, expected: str
) -> None:
    _code_package(stub, status, description)
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        validate_input.validate_input({"input": {"model": MODEL_URI}, "run": RUN})


def test_a_refused_input_asks_nothing_of_panorama(template: Any, stub: Stubber) -> None:
    """The input is checked first: the Stubber has no answer queued, and none is asked for."""
    with pytest.raises(InvalidInput, match="does not exist"):
        validate_input.validate_input({"input": {"model": f"s3://{ARTIFACTS}/missing.tar.gz"}, "run": RUN})

"""The Create*Job checks in-process, around moto's ``mock_aws`` (what handler tests install)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local_aws.sagemaker_job_requests import refuse_what_sagemaker_refuses

ROLE = "arn:aws:iam::123456789012:role/sagemaker"


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client(
            "sagemaker", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def _train(sagemaker: Any, name: str, *channels: Any, mode: str = "File") -> None:
    sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image:1", "TrainingInputMode": mode},
        **({"InputDataConfig": list(channels)} if channels else {}),
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://bucket/out/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )


def _compile(sagemaker: Any, name: str, model: str) -> None:
    sagemaker.create_compilation_job(
        CompilationJobName=name,
        RoleArn=ROLE,
        InputConfig={"S3Uri": model, "DataInputConfig": '{"data":[1,3,224,224]}', "Framework": "MXNET"},
        OutputConfig={"S3OutputLocation": "s3://bucket/compiled/", "TargetDevice": "jetson_xavier"},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )


def _code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return error.value.response["Error"]["Code"], error.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_mock_aws_refuses_a_taken_job_name_while_the_check_is_installed(sagemaker: Any) -> None:
    with refuse_what_sagemaker_refuses():
        _train(sagemaker, "train-once")
        with pytest.raises(ClientError) as error:
            _train(sagemaker, "train-once")
        assert _code(error) == ("ResourceInUse", 400)
        assert "a training job with this name already exists" in error.value.response["Error"]["Message"]
        _compile(sagemaker, "neo-once", "s3://bucket/first.tar.gz")
        with pytest.raises(ClientError) as error:
            _compile(sagemaker, "neo-once", "s3://bucket/second.tar.gz")
        assert _code(error) == ("ResourceInUse", 400)
        described = sagemaker.describe_compilation_job(CompilationJobName="neo-once")
        assert described["InputConfig"]["S3Uri"] == "s3://bucket/first.tar.gz"


def test_plain_moto_is_back_after_the_check(sagemaker: Any) -> None:
    with refuse_what_sagemaker_refuses():
        _train(sagemaker, "before")
    _train(sagemaker, "before")  # moto 5.2.5 replaces the job: the patch is gone


def _manifest_channel(**extra: Any) -> dict[str, Any]:
    source = {"S3DataType": "AugmentedManifestFile", "S3Uri": "s3://bucket/train.manifest", **extra.pop("source", {})}
    return {"ChannelName": "train", "DataSource": {"S3DataSource": source}, **extra}


@pytest.mark.parametrize(
    ("channel", "mode", "message"),
    [
        (
            _manifest_channel(source={"AttributeNames": ["source-ref", "class"]}),
            "File",
            "Channel train: S3DataType AugmentedManifestFile is supported only in Pipe input mode "
            "(the channel's input mode is File)",
        ),
        (
            _manifest_channel(InputMode="Pipe"),
            "File",
            "AttributeNames are required with S3DataType AugmentedManifestFile",
        ),
    ],
)
def test_an_augmented_manifest_outside_pipe_mode_or_without_attributes_is_refused(
    sagemaker: Any, channel: dict[str, Any], mode: str, message: str
) -> None:
    with refuse_what_sagemaker_refuses(), pytest.raises(ClientError) as error:
        _train(sagemaker, "manifest", channel, mode=mode)
    assert _code(error) == ("ValidationException", 400)
    assert message in error.value.response["Error"]["Message"]


@pytest.mark.parametrize("where", ["channel", "algorithm"])
def test_an_augmented_manifest_in_pipe_mode_with_its_attributes_is_accepted(sagemaker: Any, where: str) -> None:
    attributes = {"AttributeNames": ["source-ref", "class"]}
    channel = _manifest_channel(source=attributes, **({"InputMode": "Pipe"} if where == "channel" else {}))
    with refuse_what_sagemaker_refuses():
        _train(sagemaker, "manifest", channel, mode="Pipe" if where == "algorithm" else "File")
    assert sagemaker.describe_training_job(TrainingJobName="manifest")["TrainingJobName"] == "manifest"

"""Step ValidateInput (``lambda_handlers/validate_input.py``): check the run's input and the code package first."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import settings, validate_input
from stacks.steps.step_spec import (
    ANY_PACKAGE,
    GRANT_READ_ACTIONS,
    Allow,
    Grant,
    Permission,
    StepResources,
    StepSpec,
    list_artifacts,
    read_models,
)


def _permissions(r: StepResources) -> Sequence[Permission]:
    return (
        Grant(
            r.data.grant_read,
            GRANT_READ_ACTIONS,
            (r.data.arn_for_objects("*"),),
            "grant_read on the data bucket: a data set is any prefix in it (channels are listed and read)",
        ),
        read_models(r),
        list_artifacts(r),
        Allow(
            "DescribeNamedTrainingJob",
            ("sagemaker:DescribeTrainingJob",),
            (r.arn("sagemaker", "training-job"),),
            "the run input may name any existing training job in this account and region; describe only",
        ),
        Grant(r.key.grant_decrypt),  # the manifest template names the code package and its version
        Allow(
            "DescribeCodePackage",
            ("panorama:DescribePackage", "panorama:DescribePackageVersion"),
            (r.arn("panorama", "package"),),
            ANY_PACKAGE,
        ),
    )


VALIDATE_INPUT = StepSpec(
    handler=validate_input.validate_input,
    description="Checks the run's input",
    variables=(
        settings.DATA_BUCKET,
        settings.ARTIFACTS_BUCKET,
        settings.MANIFEST_TEMPLATE_KEY,
        settings.MODEL_PACKAGE_NAME,
        settings.CODE_PACKAGE_NAME,
    ),
    permissions=_permissions,
    timeout_seconds=900,  # streams the train channel to count its samples (a data set can be GBs)
    memory=1024,  # Lambda's network throughput grows with memory
)

"""Steps Deploy and CheckDeployment (``lambda_handlers/deployment.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import deployment, settings
from stacks.steps.step_spec import (
    ANY_INSTANCE,
    PER_DEVICE,
    PER_RUN,
    Allow,
    Permission,
    StepResources,
    StepSpec,
    create_instances,
    describe_instances,
    lock_only,
    pass_role,
    write_run_manifests,
)


def _deploy(r: StepResources) -> Sequence[Permission]:
    return (
        pass_role(r.runtime_role, "panorama.amazonaws.com"),
        Allow("ReadManifestTemplate", ("s3:GetObject",), (r.artifacts.arn_for_objects(r.manifest_template_key),)),
        *create_instances(r),
        describe_instances(r),  # a retried Deploy describes the instance it created
        Allow(
            "RemoveApplicationInstance",
            ("panorama:RemoveApplicationInstance",),
            (r.arn("panorama", "applicationInstance"),),
            ANY_INSTANCE,
        ),
        write_run_manifests(r),
        *lock_only(r),
    )


DEPLOY = StepSpec(
    handler=deployment.deploy,
    description="Creates the application instance on each device of a batch, replacing the running one",
    variables=(
        settings.ARTIFACTS_BUCKET,
        settings.MANIFEST_TEMPLATE_KEY,
        settings.RUNTIME_ROLE_ARN,
        settings.MODEL_PACKAGE_NAME,
        settings.CODE_PACKAGE_NAME,
    ),
    permissions=_deploy,
    timeout_seconds=120,  # one create per second per device (API quota): runs.deploy_batch_size <= 60
)


def _check(r: StepResources) -> Sequence[Permission]:
    return (
        describe_instances(r),
        *lock_only(r),
        Allow("ReadRunManifests", ("s3:GetObject",), (r.artifacts.arn_for_objects("runs/*"),), PER_RUN),
        Allow("WriteLastGood", ("s3:PutObject",), (r.artifacts.arn_for_objects("deployments/*"),), PER_DEVICE),
    )


CHECK_DEPLOYMENT = StepSpec(
    handler=deployment.check_deployment,
    description="Polls deployments",
    variables=(settings.ARTIFACTS_BUCKET,),
    permissions=_check,
)

"""The one Lambda asset every handler ships in: ``lambda_handlers/`` plus the manifest builders.

The deploy step builds Panorama manifests with ``panorama_app.manifest`` (standard library only), so
the asset is the repository root filtered down to those two packages; plain ``Code.from_asset``,
no bundling, no Docker. Functions name their handler by the imported function itself
(:func:`handler_path`), so an editor follows it from the construct to the code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from aws_cdk import Duration, Fn, IgnoreMode
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.log_groups import encrypted_log_group
from stacks.nag import acknowledge

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_14

#: Powertools for AWS Lambda (Python) v3, the AWS-published layer for Python 3.14 on x86_64
#: (it carries every extra, the X-Ray SDK of ``Tracer`` included).
POWERTOOLS_LAYER = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:27"
)

#: Everything at the top level is left out except the two packages (glob rules, later ones win).
ASSET_EXCLUDE = (
    "*",
    ".*",
    "!lambda_handlers",
    "!lambda_handlers/**",
    "!panorama_app",
    "!panorama_app/__init__.py",
    "!panorama_app/manifest",
    "!panorama_app/manifest/**",
    "**/__pycache__",
    "**/*.pyc",
)


def handler_code() -> lambda_.Code:
    """A fresh ``Code`` for one function (CDK stages the same directory once per hash)."""
    return lambda_.Code.from_asset(str(ROOT), exclude=list(ASSET_EXCLUDE), ignore_mode=IgnoreMode.GLOB)


def handler_path(handler: Callable[..., Any]) -> str:
    """The Lambda ``handler`` setting of an imported handler function: ``<module>.<function>``.

    The function must be reachable under its own name in its module (what Lambda imports).
    """
    module = sys.modules[handler.__module__]
    if getattr(module, handler.__name__, None) is not handler:
        raise ValueError(f"{handler.__module__}.{handler.__name__} is not the handler given (decorated twice?)")
    return f"{handler.__module__}.{handler.__name__}"


def _powertools_layer(scope: Construct) -> lambda_.ILayerVersion:
    """The Powertools layer, referenced (not deployed) once per ``scope``."""
    found = scope.node.try_find_child("Powertools")
    if found is not None:
        return cast(lambda_.ILayerVersion, found)
    return lambda_.LayerVersion.from_layer_version_arn(scope, "Powertools", Fn.sub(POWERTOOLS_LAYER))


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: Callable[..., Any],
    description: str,
    role_description: str,
    prefix: str,
    log_key: kms.IKey,
    environment: dict[str, str] | None = None,
    timeout_seconds: int = 60,
    memory: int = 256,
) -> lambda_.Function:
    """One of the project's functions, with its own log group and role.

    The shared asset, the Powertools layer (service name: ``prefix``), active tracing, an encrypted
    log group ``/<prefix>/<id>`` kept a year, and a role (``<id>Role``) that may write that log group
    and traces, and nothing else yet.
    """
    log_group = encrypted_log_group(scope, f"{construct_id}Logs", prefix=prefix, name=construct_id, key=log_key)
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        handler=handler_path(handler),
        code=handler_code(),
        role=role,
        log_group=log_group,
        layers=[_powertools_layer(scope)],
        timeout=Duration.seconds(timeout_seconds),
        memory_size=memory,
        environment={**(environment or {}), "POWERTOOLS_SERVICE_NAME": prefix},
        tracing=lambda_.Tracing.ACTIVE,
        description=description,
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5",
        "active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level permission",
        ("Resource::*",),
    )
    return function

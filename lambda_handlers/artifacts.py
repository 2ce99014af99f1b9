"""The pipeline's own objects in the artifacts bucket, read and written by several steps.

- ``MANIFEST_TEMPLATE_KEY`` (``panorama/application-manifest.json``): ``{"spec", "graph",
  "overrides"}`` written at deploy time by the application stack's custom resource
  (``stacks/panorama_application.py``, ``manifest_template.py``); the steps only read it.
- ``panorama/package-history/<package name>.json``: the patch versions the pipeline registered,
  oldest first (Panorama has no ListPackageVersions).
- ``runs/<run>/deployment/<device>.json`` and ``runs/<run>/rollback/<device>.json``: what a run
  sent to each device (written by ``deployment`` and ``rollback``).
- ``deployments/<device>/last-good.json``: what each device last ran successfully (written by
  ``deployment``, read by ``rollback``); the patch versions it pins are never deregistered, so a
  rollback still works.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lambda_handlers.errors import InvalidInput
from lambda_handlers.settings import CODE_PACKAGE_NAME, MODEL_PACKAGE_NAME
from lambda_handlers.state import ModelSection
from panorama_app.manifest.rules import ManifestError
from panorama_app.manifest.spec import ApplicationSpec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def history_key(package_name: str) -> str:
    """Key of a package's registration history."""
    return f"panorama/package-history/{package_name}.json"


def last_good_key(device: str) -> str:
    """Key of what ``device`` (its label: id or name) last ran successfully."""
    return f"deployments/{device}/last-good.json"


def read_json(s3: S3Client, bucket: str, key: str) -> Any:
    """The JSON document stored at ``key``, or None when there is none."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def write_json(s3: S3Client, bucket: str, key: str, document: Any) -> None:
    """Store ``document`` as JSON (the bucket's default encryption applies)."""
    body = json.dumps(document, sort_keys=True, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


@dataclass(frozen=True)
class ManifestTemplate:
    """The stored template: the spec, the account its package names use, the camera overrides."""

    spec: ApplicationSpec
    account_id: str
    overrides: dict[str, Any]


def load_template(s3: S3Client, bucket: str, key: str) -> ManifestTemplate:
    """Read the manifest template that ``stacks/panorama_application.py`` stored at deploy time."""
    document = read_json(s3, bucket, key)
    if document is None:
        raise ManifestError("manifest template", [f"s3://{bucket}/{key} does not exist: redeploy the application"])
    spec = ApplicationSpec.from_json(json.dumps(document["spec"]))
    suffix = f"::{spec.model_package}"
    accounts = [
        p["name"][: -len(suffix)] for p in document["graph"]["nodeGraph"]["packages"] if p["name"].endswith(suffix)
    ]
    if not accounts:
        raise ManifestError("manifest template", [f"$.graph.nodeGraph.packages: no package '<account>{suffix}'"])
    _check_package_names(spec)
    return ManifestTemplate(spec, accounts[0], document["overrides"])


def _check_package_names(spec: ApplicationSpec) -> None:
    """The stored template and this stack must name the same packages (else a deploy is half done)."""
    for variable, stored in ((MODEL_PACKAGE_NAME, spec.model_package), (CODE_PACKAGE_NAME, spec.code_package)):
        deployed = os.environ.get(variable)
        if deployed and deployed != stored:
            raise ManifestError(
                "manifest template",
                [f"names package {stored!r} but the pipeline stack's {variable} is {deployed!r}: deploy all stacks"],
            )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Bucket and key of ``s3://bucket/key``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InvalidInput(f"not an S3 object URI: {uri!r} (expected s3://bucket/key)")
    return parsed.netloc, parsed.path.lstrip("/")


def model_spec(spec: ApplicationSpec, model: ModelSection) -> ApplicationSpec:
    """The application for the run's model (a model trained elsewhere may have its own framework and input).

    The one place both the registered descriptor and the deployed graph's input parameters come from.
    """
    given: dict[str, Any] = dict(model)
    return spec.with_model(
        str(given.get("framework") or spec.framework).upper(),
        str(given.get("framework_version") or spec.framework_version),
        str(given.get("input_name") or spec.input_name),
        tuple(int(n) for n in given.get("input_shape") or spec.input_shape),
    )

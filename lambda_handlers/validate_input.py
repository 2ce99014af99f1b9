"""Step 1: check what the execution input names, before any job is started.

The input (``state["input"]``) names exactly one source:

- ``{"dataset": "s3://<data bucket>/<prefix>/"}``: a data set in the data bucket with non-empty
  ``train/`` and ``validation/`` channels (S3 prefixes). Or the manifest form,
  ``{"dataset": "s3://<data bucket>/<prefix>/train.manifest"}``: a SageMaker manifest file for the
  train channel with ``validation.manifest`` next to it (both non-empty).
  -> ``source = {"kind": "dataset", "uri", "bucket", "prefix", "s3_data_type": "S3Prefix" |
  "ManifestFile", "channels": {"train": <s3 uri>, "validation": <s3 uri>}}``.
  Raw images instead (no ``train/``/``validation/`` data, but ``<class>/`` folders holding
  .jpg/.jpeg/.png files; or any ``*.manifest`` but ``train.manifest``: a Ground Truth manifest of
  images) -> the same kind with ``prepare: true``, empty channels (and ``raw_manifest``): the
  preparation step makes the channels, if ``preparation.enabled``; otherwise refused.
- ``{"model": "s3://<data or artifacts bucket>/<key>.tar.gz"}`` with optional ``framework``,
  ``framework_version``, ``input_shape`` and ``input_name`` (defaults: the configured model): a
  model trained elsewhere -> ``source = {"kind": "model", "s3_uri"}`` and ``model``.
- ``{"training_job": "<name>"}``: a Completed SageMaker training job of this account and region
  -> ``source = {"kind": "training_job", "job_name"}`` and ``model`` (framework etc. configured).

A model (given, or a training job's artifact) must be in the pipeline's data or artifacts bucket:
those are the only buckets the SageMaker execution role reads (least privilege).

Anything else is refused with :class:`InvalidInput`, whose message names the field, the value and
the rule. The rules shared with the config (frameworks, input names and shapes, the bucket marker)
are ``lambda_handlers.domain``'s.

Then the application the run deploys: the code package's latest patch of the configured version
must be REGISTER_COMPLETED (``panopipe package-app`` registers it), or the run is refused now rather
than after hours of training; the patch is recorded (``code_package``) and the deploy step pins it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambda_handlers import dataset_records, package_versions, settings
from lambda_handlers.artifacts import load_template
from lambda_handlers.aws import clients
from lambda_handlers.aws.client_errors import (
    S3_ACCESS_DENIED,
    S3_NO_BUCKET,
    S3_NOT_FOUND,
    error_code,
)
from lambda_handlers.domain import (
    BUCKET_NAME_MARKER,
    NEO_EDGE_FRAMEWORK_VERSIONS,
    bounded,
    input_name_problem,
    layout_problem,
    shown,
)
from lambda_handlers.errors import InvalidInput
from lambda_handlers.sagemaker_jobs import TRAINING_JOB
from lambda_handlers.state import DatasetSource, ModelSection, PackageRef, RunState
from lambda_handlers.step import step

SOURCES = ("dataset", "model", "training_job")
MODEL_FIELDS = ("framework", "framework_version", "input_shape", "input_name")
ALLOWED_FIELDS: dict[str, tuple[str, ...]] = {"dataset": (), "model": MODEL_FIELDS, "training_job": ()}

CHANNELS = ("train", "validation")
MANIFEST_SUFFIX = ".manifest"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what processing/prepare.py reads
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.*)$")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def invalid(field: str, value: Any, rule: str) -> InvalidInput:
    """The error for one broken rule, worded like the config's problems: field, value, rule."""
    return InvalidInput(f"input.{bounded(field, 100)} = {shown(value)}: {rule}")


@dataclass(frozen=True)
class S3Location:
    """A parsed ``s3://bucket/key`` URI."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """The location as an s3:// URI."""
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(field: str, value: Any, uri: Any = None, what: str = "") -> S3Location:
    """Split an s3:// URI whose bucket is one the Panorama service may read, or refuse it.

    ``uri`` defaults to ``value``; when they differ (a training job's artifact), ``what`` says
    which URI the rule is about, e.g. "its model artifact s3://…: ".
    """
    uri = value if uri is None else uri
    if not isinstance(uri, str) or not uri.strip():
        raise invalid(field, value, f"{what}must be an s3:// URI (s3://<bucket>/<key>)")
    match = _S3_URI.match(uri)
    if match is None:
        raise invalid(field, value, f"{what}is not a valid s3:// URI (s3://<bucket>/<key>, bucket name in lower case)")
    location = S3Location(match["bucket"], match["key"])
    if BUCKET_NAME_MARKER not in location.bucket:
        raise invalid(
            field,
            value,
            f"{what}bucket {location.bucket!r} lacks {BUCKET_NAME_MARKER!r} in its name; the pipeline and the "
            "Panorama service may read only *aws-panorama* buckets",
        )
    return location


def _access_problem(field: str, value: str, error: ClientError) -> InvalidInput | None:
    """An InvalidInput for "no such bucket" / "access denied", or None for other (AWS-side) errors."""
    code = error_code(error)
    if code in S3_NO_BUCKET:
        return invalid(field, value, "the bucket does not exist")
    if code in S3_ACCESS_DENIED:
        return invalid(field, value, "the pipeline may not read it (access denied); use the pipeline's buckets")
    return None


def object_size(field: str, value: str, location: S3Location) -> int | None:
    """ContentLength of the object (HeadObject), or None if it does not exist."""
    try:
        head = clients.s3().head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as error:
        if error_code(error) in S3_NOT_FOUND:
            return None
        problem = _access_problem(field, value, error)
        if problem is None:
            raise
        raise problem from error
    return int(head.get("ContentLength", 0))


def require_object(field: str, value: str, location: S3Location, what: str) -> None:
    """Refuse a missing or empty object."""
    size = object_size(field, value, location)
    if size is None:
        raise invalid(field, value, f"{what} s3://{location.bucket}/{location.key} does not exist")
    if size == 0:
        raise invalid(field, value, f"{what} s3://{location.bucket}/{location.key} is empty")


def has_data(field: str, value: str, bucket: str, prefix: str) -> bool:
    """True if at least one non-empty object (not a folder marker) lies under ``prefix``."""
    paginator = clients.s3().get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/") and int(item.get("Size", 0)) > 0:
                    return True
    except ClientError as error:
        problem = _access_problem(field, value, error)
        if problem is None:
            raise
        raise problem from error
    return False


def validate_dataset(value: Any) -> DatasetSource:
    """The ``source`` section for a data set (prefix or manifest form) in the data bucket."""
    location = parse_s3_uri("dataset", value)
    data_bucket = settings.env(settings.DATA_BUCKET)
    if location.bucket != data_bucket:
        raise invalid("dataset", value, f"data sets must be in the pipeline's data bucket {data_bucket!r}")
    key = location.key
    if key.endswith(MANIFEST_SUFFIX):
        folder, _, name = key.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        if name != f"train{MANIFEST_SUFFIX}":
            # Any other manifest is a Ground Truth output of raw images: the preparation step splits it.
            require_object("dataset", value, location, "the Ground Truth manifest")
            return raw_dataset(value, location.bucket, prefix, manifest=name)
        if settings.current().training.mode == "script":
            raise invalid(
                "dataset",
                value,
                "a Ground Truth manifest is read by the built-in algorithm (Pipe mode); script mode trains "
                "from S3 prefixes: give the data set folder with train/ and validation/",
            )
        channels = {channel: S3Location(location.bucket, f"{prefix}{channel}{MANIFEST_SUFFIX}") for channel in CHANNELS}
        for channel, channel_location in channels.items():
            require_object("dataset", value, channel_location, f"the {channel} channel's manifest")
        data_type = "AugmentedManifestFile"
    else:
        prefix = key if not key or key.endswith("/") else f"{key}/"
        channels = {channel: S3Location(location.bucket, f"{prefix}{channel}/") for channel in CHANNELS}
        filled = {c: has_data("dataset", value, location.bucket, at.key) for c, at in channels.items()}
        if not any(filled.values()) and image_folders(value, location.bucket, prefix):
            return raw_dataset(value, location.bucket, prefix)
        for channel, channel_location in channels.items():
            if not filled[channel]:
                raise invalid(
                    "dataset",
                    value,
                    f"the {channel} channel {channel_location.uri} holds no data "
                    f"(a prepared data set needs objects under {', '.join(c + '/' for c in CHANNELS)}; "
                    f"a raw one, <class>/ folders of {'/'.join(IMAGE_SUFFIXES)} images)",
                )
        data_type = "S3Prefix"
    manifest = data_type == "AugmentedManifestFile"
    return {
        "kind": "dataset",
        "uri": f"s3://{location.bucket}/{key if manifest else prefix}",
        "bucket": location.bucket,
        "prefix": prefix,
        "s3_data_type": data_type,
        "channels": {channel: channel_location.uri for channel, channel_location in channels.items()},
        "train_records": train_records(value, channels["train"], manifest),
    }


def image_folders(value: Any, bucket: str, prefix: str) -> list[str]:
    """The ``<class>/`` folders directly under ``prefix`` that hold at least one image file (raw form)."""
    s3 = clients.s3()
    found: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                folder = common["Prefix"]
                listed = s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1000).get("Contents", [])
                if any(item["Key"].lower().endswith(IMAGE_SUFFIXES) for item in listed):
                    found.append(folder[len(prefix) :].rstrip("/"))
    except ClientError as error:
        problem = _access_problem("dataset", value, error)
        if problem is None:
            raise
        raise problem from error
    return found


def raw_dataset(value: Any, bucket: str, prefix: str, manifest: str | None = None) -> DatasetSource:
    """The ``source`` of raw images that the preparation step turns into channels (if it is on)."""
    form = f"a Ground Truth manifest ({manifest})" if manifest else "raw images in <class>/ folders"
    if not settings.current().preparation.enabled:
        raise invalid(
            "dataset",
            value,
            f"the data set holds {form}, which needs the preparation step, and preparation.enabled is false: "
            "enable it, or give a prepared data set with train/ and validation/ channels",
        )
    source: DatasetSource = {
        "kind": "dataset",
        "uri": f"s3://{bucket}/{prefix}{manifest or ''}",
        "bucket": bucket,
        "prefix": prefix,
        "s3_data_type": "S3Prefix",
        "channels": {},
        "train_records": None,
        "prepare": True,
    }
    if manifest:
        source["raw_manifest"] = manifest
    return source


def train_records(value: Any, train: S3Location, manifest: bool) -> int | None:
    """The train channel's sample count for the built-in algorithm (None in script mode: its own format).

    RecordIO records of every object under the channel's prefix, or the manifest's lines.
    """
    if settings.current().training.mode != "builtin":
        return None
    s3 = clients.s3()
    if manifest:
        count = dataset_records.count_lines(dataset_records.object_chunks(s3, train.bucket, train.key))
    else:
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=train.bucket, Prefix=train.key):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/") or not item.get("Size"):
                    continue
                try:
                    count += dataset_records.count_recordio(
                        dataset_records.object_chunks(s3, train.bucket, item["Key"])
                    )
                except dataset_records.NotRecordIO as error:
                    raise invalid(
                        "dataset",
                        value,
                        f"s3://{train.bucket}/{bounded(item['Key'], 200)}: {error}; the built-in image-classification "
                        "algorithm reads RecordIO (.rec) files from the train/ and validation/ channels",
                    ) from None
    if count == 0:
        raise invalid("dataset", value, f"the train channel {train.uri} holds no training samples")
    return count


def validate_model_artifact(field: str, value: Any, uri: Any = None, what: str = "") -> str:
    """The s3:// URI of an existing, non-empty model archive in the data or artifacts bucket."""
    location = parse_s3_uri(field, value, uri, what)
    readable = (settings.env(settings.DATA_BUCKET), settings.env(settings.ARTIFACTS_BUCKET))
    if location.bucket not in readable:
        raise invalid(
            field,
            value,
            f"{what}must be in the pipeline's data bucket {readable[0]!r} or artifacts bucket {readable[1]!r}, "
            "the only buckets its SageMaker role reads: copy the model there first",
        )
    if not location.key.endswith(".tar.gz"):
        raise invalid(field, value, f"{what}must name a model archive ending in .tar.gz (what Neo and Panorama read)")
    require_object(field, value, location, "the model archive")
    return location.uri


def model_description(given: dict[str, Any], uri: str) -> ModelSection:
    """The ``model`` section: framework, version, input name and shape, given ones checked, the rest configured."""
    configured = settings.current().model
    problems: list[InvalidInput] = []

    framework = given.get("framework", configured.framework)
    if not isinstance(framework, str) or framework.upper() not in NEO_EDGE_FRAMEWORK_VERSIONS:
        problems.append(invalid("framework", framework, f"must be one of {', '.join(NEO_EDGE_FRAMEWORK_VERSIONS)}"))
        framework = None
    else:
        framework = framework.upper()

    if "framework_version" in given:
        version = given["framework_version"]
    elif framework == configured.framework:
        version = configured.framework_version
    else:
        version = None
        if framework is not None:  # an unknown framework is reported already; no version fits it
            problems.append(
                invalid(
                    "framework_version",
                    None,
                    f"is required when framework differs from the configured one ({configured.framework})",
                )
            )
    if version is not None and framework is not None:
        allowed = NEO_EDGE_FRAMEWORK_VERSIONS[framework]
        if not isinstance(version, str) or version not in allowed:
            problems.append(
                invalid(
                    "framework_version",
                    version,
                    f"SageMaker Neo compiles {framework} for the appliance only in versions {', '.join(allowed)} "
                    "(give it as a string)",
                )
            )

    input_name = given.get("input_name", configured.input_name)
    name_problem = input_name_problem(input_name)
    if name_problem:
        problems.append(invalid("input_name", input_name, name_problem))

    shape = given.get("input_shape", list(configured.input_shape))
    shape_problem = (
        layout_problem(shape, framework) if isinstance(shape, list | tuple) else "must be a list of 4 dimensions"
    )
    if shape_problem:
        problems.append(invalid("input_shape", shape, shape_problem))

    if problems or framework is None or version is None:
        raise InvalidInput("; ".join(str(p) for p in problems))
    return {
        "s3_uri": uri,
        "framework": framework,
        "framework_version": version,
        "input_name": input_name,
        "input_shape": [int(d) for d in shape],
    }


def validate_training_job(value: Any) -> str:
    """The S3 URI of the artifact of a Completed training job of this account and region."""
    if not isinstance(value, str) or not _JOB_NAME.match(value):
        raise invalid("training_job", value, "must be a SageMaker training job name (letters, digits, -; ≤ 63)")
    job = TRAINING_JOB.find(value)
    if job is None:
        raise invalid("training_job", value, "no such training job in this account and region")
    status = job.get("TrainingJobStatus")
    if status != "Completed":
        reason = job.get("FailureReason")
        raise invalid("training_job", value, f"the job is {status}, not Completed" + (f": {reason}" if reason else ""))
    artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not artifact:
        raise invalid("training_job", value, "the job reports no ModelArtifacts.S3ModelArtifacts")
    return validate_model_artifact("training_job", value, artifact, f"its model artifact {artifact}: ")


def registered_code_package() -> PackageRef:
    """The code package's latest patch of the configured version, which must be REGISTER_COMPLETED.

    Read from the stored manifest template (the package name and version the deploy step's graph uses).
    """
    spec = load_template(
        clients.s3(), settings.env(settings.ARTIFACTS_BUCKET), settings.env(settings.MANIFEST_TEMPLATE_KEY)
    ).spec
    what = f"code package {spec.code_package} {spec.package_version}"
    latest = package_versions.latest_version(spec.code_package, spec.package_version)
    if latest is None:
        raise InvalidInput(f"{what} has no registered version: run `panopipe package-app --config <file>`")
    status, patch = str(latest["Status"]), str(latest["PatchVersion"])
    if status != package_versions.REGISTER_COMPLETED:
        described = f" ({latest['StatusDescription']})" if latest.get("StatusDescription") else ""
        raise InvalidInput(
            f"{what}: its latest patch {patch} is {status}{described}, not REGISTER_COMPLETED: "
            "wait for it, or register it again with `panopipe package-app --config <file>`"
        )
    return {
        "package_id": str(latest["PackageId"]),
        "package_name": spec.code_package,
        "package_version": spec.package_version,
        "patch_version": patch,
    }


@step
def validate_input(state: RunState) -> RunState:
    """Check the execution input and add ``source`` (and ``model`` unless training is needed).

    Then the code package it will deploy: ``code_package`` (its registered patch), or InvalidInput.
    """
    checked = _checked_input(state)
    return {**checked, "code_package": registered_code_package()}


def _checked_input(state: RunState) -> RunState:
    """The state with ``source`` (and ``model``) for a valid input; InvalidInput otherwise."""
    given = state.get("input")
    if not isinstance(given, dict):
        raise invalid("<root>", given, f"the execution input must be a JSON object naming one of {', '.join(SOURCES)}")
    named = [s for s in SOURCES if s in given]
    if len(named) != 1:
        rule = "names no source" if not named else f"names {len(named)} sources ({', '.join(named)})"
        raise invalid("<root>", sorted(given), f"{rule}; give exactly one of {', '.join(SOURCES)}")
    kind = named[0]
    unknown = sorted(set(given) - {kind, *ALLOWED_FIELDS[kind]})
    if unknown:
        allowed = ", ".join((kind, *ALLOWED_FIELDS[kind]))
        raise invalid(unknown[0], given[unknown[0]], f"unknown field with {kind} (allowed: {allowed})")

    if kind == "dataset":
        return {**state, "source": validate_dataset(given["dataset"])}
    if kind == "model":
        model_description(given, "")  # cheap checks first: no S3 call for a malformed input
        uri = validate_model_artifact("model", given["model"])
        return {**state, "source": {"kind": "model", "s3_uri": uri}, "model": model_description(given, uri)}
    uri = validate_training_job(given["training_job"])
    return {
        **state,
        "source": {"kind": "training_job", "job_name": given["training_job"]},
        "model": model_description({}, uri),
    }

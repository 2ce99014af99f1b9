"""What emulated SageMaker jobs write: a placeholder model where the real service would put the real one.

moto 5.2.5 writes no model artifact, yet every later step of the pipeline reads one: the gate's
Neo job compiles ``model.tar.gz``, registration uploads the compiled model as a Panorama asset. So a
finished job writes a small, valid, reproducible ``tar.gz`` where the real service writes its
output — training: ``<OutputDataConfig.S3OutputPath>/<job name>/output/model.tar.gz``; compilation:
``<OutputConfig.S3OutputLocation>/<input model basename without .tar.gz>-<target>.tar.gz``, named like
Neo's output (target: the TargetDevice, or ``<Os>_<Arch>[_<Accelerator>]`` of a TargetPlatform) —
into moto's S3, with the job's KMS key. A missing output bucket (or, for Neo, a missing input model)
makes the job fail, as a real one would.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A small, valid, reproducible tar.gz holding ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def training_artifact(job_name: str, hyperparameters: Mapping[str, str] | None) -> bytes:
    """The model.tar.gz of an emulated training job (placeholder model files and a description)."""
    about = {"emulated_by": "panopipe local", "training_job": job_name, "hyperparameters": dict(hyperparameters or {})}
    return _tar_gz(
        {
            "model-info.json": json.dumps(about, indent=1, sort_keys=True).encode("utf-8"),
            "model-symbol.json": b'{"nodes": [], "arg_nodes": [], "heads": []}',
            "model-0000.params": b"\x00" * 64,
        }
    )


def compilation_artifact(job_name: str, target: str) -> bytes:
    """The compiled model of an emulated Neo job (placeholder files named like Neo's output)."""
    meta = {"emulated_by": "panopipe local", "compilation_job": job_name, "target": target}
    return _tar_gz(
        {
            "compiled.meta": json.dumps(meta, indent=1, sort_keys=True).encode("utf-8"),
            "compiled_model.json": b'{"nodes": [], "arg_nodes": [], "heads": []}',
            "compiled.params": b"\x00" * 64,
            "compiled.so": b"\x7fELF-placeholder",
        }
    )


def compilation_target(output_config: Mapping[str, Any]) -> str:
    """The target part of Neo's output name: the TargetDevice, or ``<Os>_<Arch>[_<Accelerator>]``."""
    if output_config.get("TargetDevice"):
        return str(output_config["TargetDevice"])
    platform = output_config.get("TargetPlatform") or {}
    parts = [platform.get("Os"), platform.get("Arch"), platform.get("Accelerator")]
    return "_".join(str(part) for part in parts if part) or "unknown"


def compiled_model_uri(input_uri: str, output_location: str, target: str) -> str:
    """Where Neo writes the compiled model of ``input_uri`` for ``target``."""
    base = input_uri.rstrip("/").rsplit("/", 1)[-1]
    base = base.removesuffix(".tar.gz").removesuffix(".tgz") or "model"
    return f"{output_location.rstrip('/')}/{base}-{target}.tar.gz"


def put_s3(account_id: str, region: str, uri: str, body: bytes, kms_key_id: str | None) -> None:
    """Write ``body`` to ``uri`` in moto's S3 backend (raises moto's S3 errors, e.g. a missing bucket)."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    location = urlparse(uri)
    backend = s3_backends[account_id][get_partition(region)]
    backend.put_object(
        location.netloc,
        location.path.lstrip("/"),
        body,
        encryption="aws:kms" if kms_key_id else None,
        kms_key_id=kms_key_id or None,
    )


def s3_exists(account_id: str, region: str, uri: str) -> bool:
    """Whether the object ``uri`` exists in moto's S3 backend."""
    return s3_read(account_id, region, uri) is not None


def s3_read(account_id: str, region: str, uri: str) -> bytes | None:
    """The object ``uri``'s bytes in moto's S3 backend, or None if there is none."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    location = urlparse(uri)
    backend = s3_backends[account_id][get_partition(region)]
    try:
        found = backend.get_object(location.netloc, location.path.lstrip("/"))
    except Exception:  # moto raises MissingBucket/MissingKey
        return None
    return bytes(found.value) if found is not None else None


def manifest_file_problem(account_id: str, region: str, input_data_config: list[dict[str, Any]]) -> str | None:
    """Why a ``ManifestFile`` channel's manifest is not one (a JSON array: ``{"prefix"}``, then keys), or None.

    SageMaker starts such a job and fails it when it downloads the data; a Ground Truth augmented
    manifest (JSON lines) sent as ManifestFile is the classic case.
    """
    for channel in input_data_config:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3DataType") != "ManifestFile":
            continue
        body = s3_read(account_id, region, str(source.get("S3Uri")))
        try:
            document = json.loads(body or b"")
        except ValueError:
            document = None
        if not (isinstance(document, list) and document and isinstance(document[0], dict) and "prefix" in document[0]):
            return (
                f"ClientError: Channel {channel.get('ChannelName')}: the ManifestFile {source.get('S3Uri')} is not a "
                'manifest of keys ([{"prefix": ...}, "key", ...]); an augmented manifest needs S3DataType '
                "AugmentedManifestFile in Pipe mode"
            )
    return None

"""Builders of the Panorama documents: descriptors, package manifests, graph and overrides.

Each builder returns the JSON document as a dict and checks it (:mod:`.validation`) before
returning, so a document that leaves here is one the service accepts.
"""

from __future__ import annotations

from typing import Any

from panorama_app.manifest import spec as s
from panorama_app.manifest.rules import ENVELOPE_VERSION
from panorama_app.manifest.spec import ApplicationSpec
from panorama_app.manifest.validation import (
    validate_descriptor,
    validate_graph,
    validate_overrides,
    validate_package,
)

MODEL_ASSET = "model_asset"
CODE_ASSET = "code_asset"


def model_descriptor(spec: ApplicationSpec) -> dict[str, Any]:
    """``descriptor.json`` of the raw model asset: Panorama compiles it for the device."""
    document = {
        "mlModelDescriptor": {
            "envelopeVersion": ENVELOPE_VERSION,
            "framework": spec.framework,
            "frameworkVersion": spec.framework_version,
            "precisionMode": spec.precision,
            "inputs": [{"name": spec.input_name, "shape": list(spec.input_shape)}],
        }
    }
    validate_descriptor(document)
    return document


def code_descriptor() -> dict[str, Any]:
    """Descriptor of the code asset: run the entry point with the container's python3."""
    document = {
        "runtimeDescriptor": {"envelopeVersion": ENVELOPE_VERSION, "entry": {"path": "python3", "name": s.CODE_ENTRY}}
    }
    validate_descriptor(document)
    return document


def _package(
    name: str,
    version: str,
    description: str,
    asset: str,
    kind: str,
    asset_sha: str,
    descriptor_sha: str,
    interface: dict[str, Any],
) -> dict[str, Any]:
    document = {
        "nodePackage": {
            "envelopeVersion": ENVELOPE_VERSION,
            "name": name,
            "version": version,
            "description": description[:255],
            "assets": [
                {
                    "name": asset,
                    "implementations": [
                        {"type": kind, "assetUri": f"{asset_sha}.tar.gz", "descriptorUri": f"{descriptor_sha}.json"}
                    ],
                }
            ],
            "interfaces": [{"name": s.INTERFACE, "asset": asset, **interface}],
        }
    }
    validate_package(document)
    return document


def model_package(spec: ApplicationSpec, asset_sha: str, descriptor_sha: str) -> dict[str, Any]:
    """``package.json`` of the model package; assets are named by the sha256 of their content."""
    return _package(
        spec.model_package,
        spec.package_version,
        f"Model for {spec.description}".strip(),
        MODEL_ASSET,
        "model",
        asset_sha,
        descriptor_sha,
        {
            "category": "ml_model",
            "inputs": [{"name": s.VIDEO_IN, "type": "media"}],
            "outputs": [{"name": s.VIDEO_OUT, "type": "media"}],
        },
    )


def code_package(spec: ApplicationSpec, asset_sha: str, descriptor_sha: str) -> dict[str, Any]:
    """``package.json`` of the code package: a video input, one input per parameter, a video output."""
    return _package(
        spec.code_package,
        spec.package_version,
        f"Application code for {spec.description}".strip(),
        CODE_ASSET,
        "container",
        asset_sha,
        descriptor_sha,
        {
            "category": "business_logic",
            "inputs": [{"name": s.VIDEO_IN, "type": "media"}]
            + [{"name": p.name, "type": p.type} for p in spec.parameters],
            "outputs": [{"name": s.VIDEO_OUT, "type": "media"}],
        },
    )


def graph(
    spec: ApplicationSpec,
    account_id: str,
    *,
    values: dict[str, Any] | None = None,
    patch_versions: dict[str, str] | None = None,
    packages: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``graph.json``: camera → code → HDMI, parameter nodes wired into code inputs, the model node.

    ``values`` sets parameter values known only at deploy time (device id, region);
    ``patch_versions`` pins package patch versions (by package name); ``packages`` (name → our
    package.json) lets the validation check ports and parameter types against the interfaces.
    """
    values = values or {}
    patch_versions = patch_versions or {}

    def include(name: str) -> dict[str, str]:
        entry = {"name": f"{account_id}::{name}", "version": spec.package_version}
        if name in patch_versions:
            entry["patchVersion"] = patch_versions[name]
        return entry

    nodes: list[dict[str, Any]] = [
        {"name": s.CODE_NODE, "interface": f"{account_id}::{spec.code_package}.{s.INTERFACE}"},
        {"name": s.MODEL_NODE, "interface": f"{account_id}::{spec.model_package}.{s.INTERFACE}"},
        {
            "name": s.CAMERA_NODE,
            "interface": s.CAMERA_INTERFACE,
            "overridable": True,
            "overrideMandatory": True,
            "decorator": {"title": "Camera", "description": "The camera stream(s) to analyse."},
        },
    ]
    edges = [{"producer": f"{s.CAMERA_NODE}.{s.VIDEO_OUT}", "consumer": f"{s.CODE_NODE}.{s.VIDEO_IN}"}]
    included = [include(spec.code_package), include(spec.model_package), {"name": s.CAMERA_PACKAGE, "version": "1.0"}]
    if spec.hdmi_output:
        nodes.append({"name": s.OUTPUT_NODE, "interface": s.HDMI_INTERFACE})
        edges.append({"producer": f"{s.CODE_NODE}.{s.VIDEO_OUT}", "consumer": f"{s.OUTPUT_NODE}.{s.VIDEO_IN}"})
        included.append({"name": s.HDMI_PACKAGE, "version": "1.0"})
    for parameter in spec.parameters:
        nodes.append(
            {
                "name": parameter.name,
                "interface": parameter.type,
                "value": values.get(parameter.name, parameter.value),
                "overridable": parameter.overridable,
                "decorator": {"title": parameter.title, "description": parameter.description},
            }
        )
        edges.append({"producer": parameter.name, "consumer": f"{s.CODE_NODE}.{parameter.name}"})
    document = {
        "nodeGraph": {"envelopeVersion": ENVELOPE_VERSION, "packages": included, "nodes": nodes, "edges": edges}
    }
    validate_graph(document, packages=packages, account_id=account_id)
    return document


def camera_overrides(spec: ApplicationSpec, account_id: str, graph_document: dict[str, Any]) -> dict[str, Any]:
    """``nodeGraphOverrides`` that replace the abstract camera with the registered camera node(s)."""
    document = {
        "nodeGraphOverrides": {
            "envelopeVersion": ENVELOPE_VERSION,
            "packages": [{"name": f"{account_id}::{camera}", "version": "1.0"} for camera in spec.cameras],
            "nodes": [{"name": camera, "interface": f"{account_id}::{camera}.{camera}"} for camera in spec.cameras],
            "nodeOverrides": [{"replace": s.CAMERA_NODE, "with": [{"name": camera} for camera in spec.cameras]}],
        }
    }
    validate_overrides(document, graph_document)
    return document

"""Manifest builders and validation: generated documents satisfy the official schemas; broken ones
are rejected with a message naming the path and the rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local_aws.panorama_schema import schema_problems
from panopipe.config import load_config, parse_config
from panopipe.config.panorama_spec import application_spec
from panorama_app.manifest import ManifestError, documents
from panorama_app.manifest.spec import ApplicationSpec
from panorama_app.manifest.validation import (
    MAX_PAYLOAD_CHARS,
    payload,
    validate_descriptor,
    validate_graph,
    validate_overrides,
    validate_package,
)
from tests.conftest import ROOT

SAMPLES = Path(__file__).parent / "samples"  # the AWS Panorama sample application (CC BY-SA 4.0)
ACCOUNT = "123456789012"
SHA = {"model": "a" * 64, "model_descriptor": "b" * 64, "code": "c" * 64, "code_descriptor": "d" * 64}


def _official_errors(name: str, document: dict[str, Any]) -> list[str]:
    """The official schema's verdict (the copy the local Panorama service validates with)."""
    return schema_problems(name, document)


def _spec(config_file: str, **changes: Any) -> ApplicationSpec:
    if not changes:
        return application_spec(load_config(ROOT / config_file, base_dir=ROOT))
    import yaml

    data = yaml.safe_load((ROOT / config_file).read_text())
    data.update(changes)
    return application_spec(parse_config(data, base_dir=ROOT))


def _all_documents(spec: ApplicationSpec) -> dict[str, Any]:
    model = documents.model_package(spec, SHA["model"], SHA["model_descriptor"])
    code = documents.code_package(spec, SHA["code"], SHA["code_descriptor"])
    packages = {spec.model_package: model, spec.code_package: code}
    graph = documents.graph(spec, ACCOUNT, values={"device_id": "device-1", "region": "us-west-2"}, packages=packages)
    return {
        "graph": graph,
        "overrides": documents.camera_overrides(spec, ACCOUNT, graph),
        "model_package": model,
        "code_package": code,
        "model_descriptor": documents.model_descriptor(spec),
        "code_descriptor": documents.code_descriptor(),
    }


SPECS: dict[str, Callable[[], ApplicationSpec]] = {
    "dev": lambda: _spec("config/dev.yaml"),
    "example-two-cameras": lambda: _spec("config/example.yaml"),
    "script-detector-nchw": lambda: _spec("tests/configs/script.yaml"),
    "no-hdmi-eight-cameras": lambda: _spec(
        "config/dev.yaml",
        application={"hdmi_output": False},
        cameras=[{"name": f"camera_{i}"} for i in range(8)],
    ),
}

OFFICIAL_SCHEMA = {
    "graph": "nodeGraph.schema.json",
    "overrides": "nodeGraphOverrides.schema.json",
    "model_package": "nodePackage.schema.json",
    "code_package": "nodePackage.schema.json",
    "model_descriptor": "assetDescriptor.schema.json",
    "code_descriptor": "assetDescriptor.schema.json",
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_generated_documents_validate_against_the_official_schemas(case: str) -> None:
    for kind, document in _all_documents(SPECS[case]()).items():
        assert _official_errors(OFFICIAL_SCHEMA[kind], document) == [], (case, kind)


def test_graph_wires_camera_code_hdmi_and_parameters() -> None:
    spec = _spec("config/example.yaml")
    graph = _all_documents(spec)["graph"]["nodeGraph"]
    edges = {(e["producer"], e["consumer"]) for e in graph["edges"]}
    assert ("camera_node.video_out", "code_node.video_in") in edges
    assert ("code_node.video_out", "output_node.video_in") in edges
    assert ("threshold", "code_node.threshold") in edges
    assert not [e for e in edges if "model_node" in e[0] or "model_node" in e[1]]
    values = {n["name"]: n.get("value") for n in graph["nodes"]}
    assert values["threshold"] == 0.6
    assert values["classes_of_interest"] == "person"
    assert values["device_id"] == "device-1"
    assert values["metrics_namespace"] == "PanoramaPipeline/panopipe-prod"
    assert {p["name"] for p in graph["packages"]} == {
        f"{ACCOUNT}::panopipe_prod_app",
        f"{ACCOUNT}::panopipe_prod_people_classifier",
        "panorama::abstract_rtsp_media_source",
        "panorama::hdmi_data_sink",
    }


def test_overrides_replace_the_abstract_camera_with_every_configured_camera() -> None:
    overrides = _all_documents(_spec("config/example.yaml"))["overrides"]["nodeGraphOverrides"]
    assert overrides["nodeOverrides"] == [
        {"replace": "camera_node", "with": [{"name": "dock_door_camera"}, {"name": "aisle_camera"}]}
    ]
    assert [p["name"] for p in overrides["packages"]] == [f"{ACCOUNT}::dock_door_camera", f"{ACCOUNT}::aisle_camera"]


def test_descriptor_and_packages_follow_the_model_config() -> None:
    docs = _all_documents(_spec("tests/configs/script.yaml"))
    assert docs["model_descriptor"] == {
        "mlModelDescriptor": {
            "envelopeVersion": "2021-01-01",
            "framework": "PYTORCH",
            "frameworkVersion": "1.8",
            "precisionMode": "FP16",
            "inputs": [{"name": "data", "shape": [1, 3, 512, 512]}],
        }
    }
    (impl,) = docs["model_package"]["nodePackage"]["assets"][0]["implementations"]
    assert impl == {
        "type": "model",
        "assetUri": f"{SHA['model']}.tar.gz",
        "descriptorUri": f"{SHA['model_descriptor']}.json",
    }
    inputs = {p["name"]: p["type"] for p in docs["code_package"]["nodePackage"]["interfaces"][0]["inputs"]}
    assert inputs["video_in"] == "media" and inputs["threshold"] == "float32" and inputs["task"] == "string"


def test_the_official_sample_documents_pass_our_validation() -> None:
    """Our rules are not stricter than the service on its own sample application."""
    samples = {p.name: json.loads(p.read_text()) for p in SAMPLES.glob("*.json")}
    packages = {
        "SAMPLE_CODE": samples["SAMPLE_CODE-1.0.package.json"],
        "SQUEEZENET_PYTORCH": samples["SQUEEZENET_PYTORCH-1.0.package.json"],
    }
    validate_graph(samples["graph.json"], packages=packages, account_id="123456789012")
    validate_descriptor(samples["SQUEEZENET_PYTORCH-1.0.descriptor.json"])
    validate_descriptor(samples["SAMPLE_CODE-1.0.descriptor.json"])
    validate_package(samples["SQUEEZENET_PYTORCH-1.0.package.json"])


def _broken(kind: str, mutate: Callable[[dict[str, Any]], None]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    docs = _all_documents(_spec("config/example.yaml"))
    document = copy.deepcopy(docs[kind])
    mutate(document)
    return kind, document, docs


def _node(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in doc["nodeGraph"]["nodes"] if n["name"] == name)


BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "envelope-version": (
        "graph",
        lambda d: d["nodeGraph"].update(envelopeVersion="2020-01-01"),
        "$.nodeGraph.envelopeVersion = '2020-01-01': must be one of '2021-01-01'",
    ),
    "node-name-pattern": (
        "graph",
        lambda d: _node(d, "threshold").update(name="detection threshold"),
        "must match ^[$A-Z_a-z0-9\\-]+$",
    ),
    "unknown-field": (
        "graph",
        lambda d: _node(d, "code_node").update(launch_mode="now"),
        "$.nodeGraph.nodes[0].launch_mode: unknown field",
    ),
    "edge-to-missing-node": (
        "graph",
        lambda d: d["nodeGraph"]["edges"].append({"producer": "threshold", "consumer": "ghost_node.threshold"}),
        "no node named 'ghost_node'",
    ),
    "edge-to-missing-port": (
        "graph",
        lambda d: d["nodeGraph"]["edges"].append({"producer": "threshold", "consumer": "code_node.speed"}),
        "has no input 'speed'",
    ),
    "parameter-type-mismatch": (
        "graph",
        lambda d: _node(d, "threshold").update(interface="string", value="0.5"),
        "'threshold' produces string but 'code_node.threshold' takes float32",
    ),
    "parameter-value-kind": (
        "graph",
        lambda d: _node(d, "threshold").update(value="high"),
        "$.nodeGraph.nodes[4].value = 'high': must be a number",
    ),
    "model-node-with-edge": (
        "graph",
        lambda d: d["nodeGraph"]["edges"].append(
            {"producer": "camera_node.video_out", "consumer": "model_node.video_in"}
        ),
        "model node 'model_node' must have no edges",
    ),
    "interface-package-not-listed": (
        "graph",
        lambda d: d["nodeGraph"]["packages"].pop(3),
        "package 'panorama::hdmi_data_sink' is not in nodeGraph.packages",
    ),
    "duplicate-node-name": (
        "graph",
        lambda d: d["nodeGraph"]["nodes"].append(dict(_node(d, "threshold"))),
        "node name 'threshold' is used more than once",
    ),
    "payload-too-large": (
        "graph",
        lambda d: _node(d, "class_names").update(value="x" * MAX_PAYLOAD_CHARS),
        "the service accepts at most 51200",
    ),
    "other-account-package": (
        "graph",
        lambda d: _node(d, "code_node").update(interface="999999999999::panopipe_prod_app.interface"),
        "is not in nodeGraph.packages",
    ),
    "package-version-pattern": (
        "model_package",
        lambda d: d["nodePackage"].update(version="1"),
        "$.nodePackage.version = '1': must match ^[0-9]+\\.[0-9]+$",
    ),
    "package-interface-category": (
        "code_package",
        lambda d: d["nodePackage"]["interfaces"][0].update(category="application"),
        "category = 'application': must be one of 'media_source', 'media_sink', 'business_logic', 'ml_model'",
    ),
    "asset-uri-not-sha": (
        "model_package",
        lambda d: d["nodePackage"]["assets"][0]["implementations"][0].update(assetUri="model.tar.gz"),
        "assetUri = 'model.tar.gz': must be '<sha256>.tar.gz'",
    ),
    "interface-names-missing-asset": (
        "code_package",
        lambda d: d["nodePackage"]["interfaces"][0].update(asset="other_asset"),
        "asset = 'other_asset': no asset of that name in this package",
    ),
    "port-name-pattern": (
        "code_package",
        lambda d: d["nodePackage"]["interfaces"][0]["inputs"].append({"name": "bad-port", "type": "string"}),
        "name = 'bad-port': must match ^[$A-Z_a-z0-9]+$",
    ),
    "descriptor-framework": (
        "model_descriptor",
        lambda d: d["mlModelDescriptor"].update(framework="ONNX"),
        "framework = 'ONNX': must be one of 'TENSORFLOW', 'PYTORCH', 'MXNET'",
    ),
    "descriptor-missing-inputs": (
        "model_descriptor",
        lambda d: d["mlModelDescriptor"].pop("inputs"),
        "required field 'inputs' is missing",
    ),
    "override-replaces-missing-node": (
        "overrides",
        lambda d: d["nodeGraphOverrides"]["nodeOverrides"][0].update(replace="front_camera"),
        "replace = 'front_camera': the graph has no such node",
    ),
    "override-replaces-fixed-node": (
        "overrides",
        lambda d: d["nodeGraphOverrides"]["nodeOverrides"][0].update(replace="code_node"),
        "replace = 'code_node': that graph node is not overridable",
    ),
    "override-camera-package-missing": (
        "overrides",
        lambda d: d["nodeGraphOverrides"]["packages"].pop(0),
        "its package is not in nodeGraphOverrides.packages",
    ),
}

VALIDATORS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "graph": lambda doc, docs: validate_graph(
        doc,
        account_id=ACCOUNT,
        packages={
            "panopipe_prod_app": docs["code_package"],
            "panopipe_prod_people_classifier": docs["model_package"],
        },
    ),
    "overrides": lambda doc, docs: validate_overrides(doc, docs["graph"]),
    "model_package": lambda doc, docs: validate_package(doc),
    "code_package": lambda doc, docs: validate_package(doc),
    "model_descriptor": lambda doc, docs: validate_descriptor(doc),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_document_is_rejected_with_the_right_message(case: str) -> None:
    kind, mutate, expected = BROKEN[case]
    kind, document, docs = _broken(kind, mutate)
    with pytest.raises(ManifestError) as caught:
        VALIDATORS[kind](document, docs)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_schema_rules_agree_with_the_official_schemas_on_broken_documents() -> None:
    """Where a break is a pure schema rule, the official schema rejects it too (our rules are real)."""
    for case in (
        "envelope-version",
        "node-name-pattern",
        "unknown-field",
        "package-version-pattern",
        "package-interface-category",
        "port-name-pattern",
        "descriptor-framework",
        "descriptor-missing-inputs",
    ):
        kind, mutate, _ = BROKEN[case]
        kind, document, _ = _broken(kind, mutate)
        assert _official_errors(OFFICIAL_SCHEMA[kind], document), case


def test_payload_is_compact_json() -> None:
    graph = _all_documents(_spec("config/dev.yaml"))["graph"]
    assert payload(graph) == json.dumps(graph, separators=(",", ":"))
    assert len(payload(graph)) < MAX_PAYLOAD_CHARS


def test_spec_round_trips_through_json() -> None:
    spec = _spec("config/example.yaml")
    assert ApplicationSpec.from_json(spec.to_json()) == spec
    assert spec.instance_name("device-abc") == "panopipe-prod-device-abc"

"""Checks of whole Panorama documents.

The schema rules, plus the cross-references between nodes, edges, packages and ports that the
service checks at deploy time.
"""

from __future__ import annotations

import json
import re
from typing import Any

from panorama_app.manifest.rules import (
    ASSET_DESCRIPTOR,
    EDGE,
    ENVELOPE,
    INTERFACE_NODE,
    NODE_OVERRIDE,
    NODE_PACKAGE,
    PACKAGE_INCLUDE,
    PARAMETER_TYPES,
    ManifestError,
    Rule,
    Shape,
    check_shape,
    check_value,
    parameter_node_shape,
)

#: CreateApplicationInstance's ManifestPayload.PayloadData (and overrides) limit.
MAX_PAYLOAD_CHARS = 51_200
_SHA_ASSET = re.compile(r"^[0-9a-f]{64}\.tar\.gz$")
_SHA_DESCRIPTOR = re.compile(r"^[0-9a-f]{64}\.json$")

GRAPH = Shape(
    {
        "nodeGraph": Rule(
            dict,
            shape=Shape(
                {
                    "envelopeVersion": ENVELOPE,
                    "description": Rule(str, max_length=255),
                    "packages": Rule(list, items=PACKAGE_INCLUDE, min_length=1),
                    "nodes": Rule(list, min_length=1),  # items checked per kind below
                    "edges": Rule(list, items=EDGE),
                    "networkRoutingRules": Rule(list),
                },
                frozenset({"envelopeVersion", "packages", "nodes"}),
            ),
        )
    },
    frozenset({"nodeGraph"}),
)

OVERRIDES = Shape(
    {
        "nodeGraphOverrides": Rule(
            dict,
            shape=Shape(
                {
                    "envelopeVersion": ENVELOPE,
                    "description": Rule(str, max_length=255),
                    "packages": Rule(list, items=PACKAGE_INCLUDE),
                    "nodes": Rule(list),
                    "edges": Rule(list, items=EDGE),
                    "networkRoutingRules": Rule(list),
                    "nodeOverrides": Rule(list, items=NODE_OVERRIDE),
                },
                frozenset({"envelopeVersion"}),
            ),
        )
    },
    frozenset({"nodeGraphOverrides"}),
)


def payload(document: dict[str, Any]) -> str:
    """The compact JSON text sent as ``PayloadData``."""
    return json.dumps(document, separators=(",", ":"))


def _raise(document: str, problems: list[str]) -> None:
    if problems:
        raise ManifestError(document, problems)


def _check_payload_size(document: dict[str, Any], path: str) -> list[str]:
    size = len(payload(document))
    if size > MAX_PAYLOAD_CHARS:
        return [f"{path}: payload is {size} characters; the service accepts at most {MAX_PAYLOAD_CHARS}"]
    return []


def _check_nodes(nodes: list[Any], path: str) -> list[str]:
    problems: list[str] = []
    for index, node in enumerate(nodes):
        node_path = f"{path}[{index}]"
        kind = node.get("interface") if isinstance(node, dict) else None
        shape = parameter_node_shape(kind) if kind in PARAMETER_TYPES else INTERFACE_NODE
        problems += check_shape(node, shape, node_path)
    names = [str(n.get("name")) for n in nodes if isinstance(n, dict)]
    problems += [
        f"{path}: node name {n!r} is used more than once" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    return problems


def validate_descriptor(document: dict[str, Any]) -> None:
    """A model or code asset descriptor: exactly one of the two kinds, each by its rules."""
    problems = check_shape(document, ASSET_DESCRIPTOR, "$")
    if isinstance(document, dict) and len(set(document) & {"mlModelDescriptor", "runtimeDescriptor"}) != 1:
        problems.append("$: must hold exactly one of mlModelDescriptor or runtimeDescriptor")
    _raise("descriptor", problems)


def validate_package(document: dict[str, Any]) -> None:
    """A ``package.json``: schema rules, sha256-named assets, and interfaces naming real assets."""
    problems = check_shape(document, NODE_PACKAGE, "$")
    if not problems:
        package = document["nodePackage"]
        assets = {a["name"]: a for a in package.get("assets", [])}
        for index, asset in enumerate(package.get("assets", [])):
            for impl_index, impl in enumerate(asset.get("implementations", [])):
                where = f"$.nodePackage.assets[{index}].implementations[{impl_index}]"
                if impl["type"] != "system" and not _SHA_ASSET.match(impl["assetUri"]):
                    problems.append(f"{where}.assetUri = {impl['assetUri']!r}: must be '<sha256>.tar.gz'")
                if "descriptorUri" in impl and not _SHA_DESCRIPTOR.match(impl["descriptorUri"]):
                    problems.append(f"{where}.descriptorUri = {impl['descriptorUri']!r}: must be '<sha256>.json'")
        for index, interface in enumerate(package["interfaces"]):
            where = f"$.nodePackage.interfaces[{index}]"
            if "asset" in interface and interface["asset"] not in assets:
                problems.append(f"{where}.asset = {interface['asset']!r}: no asset of that name in this package")
            for direction in ("inputs", "outputs"):
                ports = [p["name"] for p in interface.get(direction, [])]
                repeated = sorted({p for p in ports if ports.count(p) > 1})
                problems += [f"{where}.{direction}: port {p!r} is declared more than once" for p in repeated]
    _raise("package.json", problems)


def _ports(packages: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``<package>.<interface>`` → {"category", "inputs": {port: type}, "outputs": {port: type}}."""
    table = {}
    for name, document in packages.items():
        for interface in document["nodePackage"]["interfaces"]:
            table[f"{name}.{interface['name']}"] = {
                "category": interface["category"],
                "inputs": {p["name"]: p["type"] for p in interface.get("inputs", [])},
                "outputs": {p["name"]: p["type"] for p in interface.get("outputs", [])},
            }
    return table


def validate_graph(
    document: dict[str, Any], *, packages: dict[str, dict[str, Any]] | None = None, account_id: str | None = None
) -> None:
    """A ``graph.json``: schema rules, then every reference between packages, nodes and edges.

    With ``packages`` (package name → its ``package.json``) ports and parameter types are checked
    against the interfaces; with ``account_id`` our packages must be that account's.
    """
    problems = check_shape(document, GRAPH, "$")
    if problems:
        _raise("graph.json", problems)
    graph = document["nodeGraph"]
    problems += _check_nodes(graph["nodes"], "$.nodeGraph.nodes")
    if problems:
        _raise("graph.json", problems)
    included = [p["name"] for p in graph["packages"]]
    problems += [
        f"$.nodeGraph.packages: package {n!r} is listed more than once"
        for n in sorted({n for n in included if included.count(n) > 1})
    ]
    nodes = {n["name"]: n for n in graph["nodes"]}
    interfaces = _ports({f"{account_id}::{k}" if account_id else k: v for k, v in (packages or {}).items()})
    for index, node in enumerate(graph["nodes"]):
        if node["interface"] in PARAMETER_TYPES:
            continue
        package = node["interface"].rsplit(".", 1)[0]
        if package not in included:
            problems.append(
                f"$.nodeGraph.nodes[{index}].interface = {node['interface']!r}: "
                f"package {package!r} is not in nodeGraph.packages"
            )
        elif account_id and "::" in package and not package.startswith(("panorama::", f"{account_id}::")):
            problems.append(
                f"$.nodeGraph.nodes[{index}].interface = {node['interface']!r}: "
                f"must be a package of account {account_id}"
            )
    connected: set[str] = set()
    for index, edge in enumerate(graph.get("edges", [])):
        where = f"$.nodeGraph.edges[{index}]"
        producer_node, _, producer_port = edge["producer"].partition(".")
        consumer_node, _, consumer_port = edge["consumer"].partition(".")
        connected |= {producer_node, consumer_node}
        for role, name in (("producer", producer_node), ("consumer", consumer_node)):
            if name not in nodes:
                problems.append(f"{where}.{role} = {edge[role]!r}: no node named {name!r}")
        if producer_node not in nodes or consumer_node not in nodes:
            continue
        producer, consumer = nodes[producer_node], nodes[consumer_node]
        if not consumer_port:
            problems.append(f"{where}.consumer = {edge['consumer']!r}: must name a port, '<node>.<port>'")
        if consumer["interface"] in PARAMETER_TYPES:
            problems.append(f"{where}.consumer = {edge['consumer']!r}: a value node has no inputs")
        if producer["interface"] in PARAMETER_TYPES:
            if producer_port:
                problems.append(f"{where}.producer = {edge['producer']!r}: a value node is named without a port")
            produced_type = producer["interface"]
        else:
            if not producer_port:
                problems.append(f"{where}.producer = {edge['producer']!r}: must name a port, '<node>.<port>'")
            outputs = interfaces.get(producer["interface"], {}).get("outputs")
            produced_type = outputs.get(producer_port) if outputs else None
            if outputs is not None and producer_port not in outputs:
                problems.append(
                    f"{where}.producer = {edge['producer']!r}: {producer['interface']} has no output {producer_port!r}"
                )
        inputs = interfaces.get(consumer["interface"], {}).get("inputs")
        if inputs is not None and consumer_port:
            if consumer_port not in inputs:
                problems.append(
                    f"{where}.consumer = {edge['consumer']!r}: {consumer['interface']} has no input {consumer_port!r}"
                )
            elif produced_type is not None and inputs[consumer_port] != produced_type:
                problems.append(
                    f"{where}: {edge['producer']!r} produces {produced_type} "
                    f"but {edge['consumer']!r} takes {inputs[consumer_port]}"
                )
    for name, node in nodes.items():
        category = interfaces.get(node["interface"], {}).get("category")
        if (category == "ml_model" or (category is None and name == "model_node")) and name in connected:
            problems.append(f"$.nodeGraph: model node {name!r} must have no edges (the code node calls it by name)")
    problems += _check_payload_size(document, "$")
    _raise("graph.json", problems)


def validate_overrides(document: dict[str, Any], graph_document: dict[str, Any]) -> None:
    """``nodeGraphOverrides``: schema rules; replaced nodes exist and are overridable; replacements exist."""
    problems = check_shape(document, OVERRIDES, "$")
    if problems:
        _raise("overrides", problems)
    overrides = document["nodeGraphOverrides"]
    problems += _check_nodes(overrides.get("nodes", []), "$.nodeGraphOverrides.nodes")
    graph_nodes = {n["name"]: n for n in graph_document["nodeGraph"]["nodes"]}
    override_nodes = {n.get("name") for n in overrides.get("nodes", []) if isinstance(n, dict)}
    included = {p["name"] for p in overrides.get("packages", [])}
    for index, node in enumerate(overrides.get("nodes", [])):
        interface = node.get("interface", "") if isinstance(node, dict) else ""
        if interface not in PARAMETER_TYPES and interface.rsplit(".", 1)[0] not in included:
            problems.append(
                f"$.nodeGraphOverrides.nodes[{index}].interface = {interface!r}: "
                "its package is not in nodeGraphOverrides.packages"
            )
    for index, override in enumerate(overrides.get("nodeOverrides", [])):
        where = f"$.nodeGraphOverrides.nodeOverrides[{index}]"
        target = graph_nodes.get(override["replace"])
        if target is None:
            problems.append(f"{where}.replace = {override['replace']!r}: the graph has no such node")
        elif not target.get("overridable", False):
            problems.append(f"{where}.replace = {override['replace']!r}: that graph node is not overridable")
        if not override["with"]:
            problems.append(f"{where}.with: must name at least one node")
        for item in override["with"]:
            if item["name"] not in override_nodes and item["name"] not in graph_nodes:
                problems.append(f"{where}.with: no node named {item['name']!r} in the overrides or the graph")
    problems += _check_payload_size(document, "$")
    _raise("overrides", problems)


__all__ = [
    "MAX_PAYLOAD_CHARS",
    "check_value",
    "payload",
    "validate_descriptor",
    "validate_graph",
    "validate_overrides",
    "validate_package",
]

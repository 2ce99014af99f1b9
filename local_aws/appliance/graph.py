"""What a deployed graph asks the appliance to run: the code node's inputs, cameras and model nodes.

The device reads the application's ``graph.json`` with the instance's overrides applied: a parameter
node's value reaches the code node input its edge names, an override node replaces a parameter's value
or the abstract camera (by one or several cameras), and a model node is served from its package's model
asset. The appliance needs the same reading to feed the application what a device would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_PARAMETER_TYPES = {"boolean": bool, "float32": float, "int32": int, "string": str}
_SYSTEM = "panorama::"
_CAMERA_INTERFACE = "panorama::abstract_rtsp_media_source."


@dataclass(frozen=True)
class GraphPlan:
    """The code node, its parameter inputs (typed), the cameras feeding it, the model nodes by package."""

    code_node: str
    code_package: str
    parameters: dict[str, Any]
    cameras: tuple[str, ...]
    video_input: str  # the code node's input the cameras are wired to
    video_outputs: tuple[str, ...]  # its outputs wired to a data sink (HDMI)
    models: dict[str, str]  # model node name -> package name (without the account)


def _package_of(interface: str) -> str:
    """``<account>::<package>.<interface>`` → ``<package>``."""
    return interface.partition("::")[2].partition(".")[0]


def plan(graph: dict[str, Any], overrides: dict[str, Any] | None, code_packages: set[str]) -> GraphPlan:
    """Resolve the graph against its overrides; ``code_packages`` names the packages with a container asset."""
    node_graph = graph["nodeGraph"]
    nodes = {str(n["name"]): n for n in node_graph["nodes"]}
    override_document = (overrides or {}).get("nodeGraphOverrides", {})
    override_nodes = {str(n["name"]): n for n in override_document.get("nodes", [])}
    replaced = {
        str(o["replace"]): [str(w["name"]) for w in o.get("with", [])]
        for o in override_document.get("nodeOverrides", [])
    }
    code = [
        name
        for name, node in nodes.items()
        if not str(node["interface"]).startswith(_SYSTEM) and _package_of(str(node["interface"])) in code_packages
    ]
    if len(code) != 1:
        raise ValueError(f"the graph must have one code node of a container package, found {code or 'none'}")
    code_node = code[0]
    parameters: dict[str, Any] = {}
    cameras: list[str] = []
    video_input, outputs = "", []
    for edge in node_graph.get("edges", []):
        producer, consumer = str(edge["producer"]), str(edge["consumer"])
        if producer.partition(".")[0] == code_node:
            outputs.append(producer.partition(".")[2])
        if consumer.partition(".")[0] != code_node:
            continue
        source = producer.partition(".")[0]
        node = nodes[source]
        interface = str(node["interface"])
        if interface in _PARAMETER_TYPES:
            value = node.get("value")
            for replacement in replaced.get(source, []):
                value = override_nodes[replacement].get("value", value)
            parameters[consumer.partition(".")[2]] = _PARAMETER_TYPES[interface](value)
        elif interface.startswith(_CAMERA_INTERFACE):
            cameras.extend(replaced.get(source) or [source])
            video_input = consumer.partition(".")[2]
    if not cameras:
        raise ValueError(f"no camera is wired to the code node {code_node}")
    models = {
        name: _package_of(str(node["interface"]))
        for name, node in nodes.items()
        if name != code_node
        and not str(node["interface"]).startswith(_SYSTEM)
        and node["interface"] not in _PARAMETER_TYPES
    }
    return GraphPlan(
        code_node=code_node,
        code_package=_package_of(str(nodes[code_node]["interface"])),
        parameters=parameters,
        cameras=tuple(cameras),
        video_input=video_input,
        video_outputs=tuple(outputs),
        models=models,
    )

"""What the application is, independent of any deployment: the input of every manifest builder.

``ApplicationSpec`` is made from the pipeline config at synth time (``panopipe/config/panorama_spec.py``),
stored as JSON in the artifacts bucket, and read back by the pipeline's deploy step, which fills in
what is only known then (account id, package patch versions, device id, region).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Node and port names shared by the graph, the code package and the on-device application.
CODE_NODE = "code_node"
MODEL_NODE = "model_node"
CAMERA_NODE = "camera_node"
OUTPUT_NODE = "output_node"
VIDEO_IN = "video_in"
VIDEO_OUT = "video_out"
INTERFACE = "interface"
CAMERA_INTERFACE = "panorama::abstract_rtsp_media_source.rtsp_v1_interface"
CAMERA_PACKAGE = "panorama::abstract_rtsp_media_source"
HDMI_INTERFACE = "panorama::hdmi_data_sink.hdmi0"
HDMI_PACKAGE = "panorama::hdmi_data_sink"
CODE_ENTRY = "/panorama/app.py"

#: Parameters whose value is only known per deployment (filled by the deploy step).
DEPLOY_TIME_PARAMETERS = ("device_id", "region")


@dataclass(frozen=True)
class Parameter:
    """A value node wired into a code-node input port of the same name and type."""

    name: str
    type: str  # float32 | int32 | string | boolean
    value: Any
    title: str
    description: str
    overridable: bool = True


@dataclass(frozen=True)
class ApplicationSpec:
    """The application: its two packages, the model's input, the cameras and the parameters."""

    model_package: str
    code_package: str
    framework: str
    framework_version: str
    input_name: str
    input_shape: tuple[int, ...]
    precision: str
    cameras: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    hdmi_output: bool = True
    package_version: str = "1.0"
    description: str = ""
    instance_name_prefix: str = "app"
    extra: dict[str, Any] = field(default_factory=dict)

    def instance_name(self, device: str) -> str:
        """The application instance name on one device (alarms and the deploy step share it)."""
        return f"{self.instance_name_prefix}-{device}"[:255]

    def to_json(self) -> str:
        """Serialized form stored in the artifacts bucket."""
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ApplicationSpec:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["input_shape"] = tuple(data["input_shape"])
        data["cameras"] = tuple(data["cameras"])
        data["parameters"] = tuple(Parameter(**p) for p in data["parameters"])
        return cls(**data)

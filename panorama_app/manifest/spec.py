"""What the application is, independent of any deployment: the input of every manifest builder.

``ApplicationSpec`` is made from the pipeline config at synth time (``panopipe/config/panorama_spec.py``),
stored as JSON in the artifacts bucket, and read back by the pipeline's deploy step, which fills in
what is only known then (account id, package patch versions, device id, region).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lambda_handlers.domain import NHWC_FRAMEWORKS

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


#: Parameters that describe the model's input: derived from the spec's model fields, never set apart,
#: so a model given at run time (its own framework, input name and shape) reaches the application
#: together with its package.
MODEL_INPUT_PARAMETERS = ("input_shape", "input_layout", "input_name")


def model_input_parameters(framework: str, input_name: str, input_shape: tuple[int, ...]) -> tuple[Parameter, ...]:
    """The code node's parameters that tell it how to feed the model."""
    layout = "NHWC" if framework in NHWC_FRAMEWORKS else "NCHW"
    return (
        Parameter(
            "input_shape", "string", ",".join(map(str, input_shape)), "Input shape", "The model's input shape.", False
        ),
        Parameter("input_layout", "string", layout, "Input layout", "NCHW or NHWC.", False),
        Parameter("input_name", "string", input_name, "Input name", "The model's input tensor name.", False),
    )


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

    def with_model(
        self, framework: str, framework_version: str, input_name: str, input_shape: tuple[int, ...]
    ) -> ApplicationSpec:
        """The same application for another model: its descriptor fields and input parameters together."""
        derived = {p.name: p for p in model_input_parameters(framework, input_name, input_shape)}
        missing = tuple(derived[n] for n in MODEL_INPUT_PARAMETERS if n not in {p.name for p in self.parameters})
        return replace(
            self,
            framework=framework,
            framework_version=framework_version,
            input_name=input_name,
            input_shape=input_shape,
            # each in its place (the graph's node order stays the template's); any missing at the end
            parameters=tuple(derived.get(p.name, p) for p in self.parameters) + missing,
        )

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

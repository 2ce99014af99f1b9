"""What SageMaker Neo compiles for the appliance: one table for the config (synth) and the Lambda.

Standard library only, so ``validate_input`` checks a model given at run time by the same rules
that ``panopipe/config.py`` applies to the configured model.
"""

from __future__ import annotations

#: Framework versions SageMaker Neo compiles for edge devices such as the Jetson Xavier.
NEO_EDGE_FRAMEWORK_VERSIONS: dict[str, tuple[str, ...]] = {
    "MXNET": ("1.8",),
    "PYTORCH": ("1.4", "1.5", "1.6", "1.7", "1.8"),
    "TENSORFLOW": ("1.15", "2.4"),
}

#: Channel-last frameworks; the others take NCHW input.
NHWC_FRAMEWORKS = frozenset({"TENSORFLOW"})

"""Rules of the domain that the config (at synth time) and the handlers (in Lambda) both apply.

Standard library only: this module ships in the Lambda asset, and ``panopipe.config`` imports it,
so a model given at run time is checked by the same rules as the configured one.
"""

from __future__ import annotations

import datetime
import re
import reprlib
from collections.abc import Sequence

#: Framework versions SageMaker Neo compiles for edge devices such as the Jetson AGX Xavier.
NEO_EDGE_FRAMEWORK_VERSIONS: dict[str, tuple[str, ...]] = {
    "MXNET": ("1.8",),
    "PYTORCH": ("1.4", "1.5", "1.6", "1.7", "1.8"),
    "TENSORFLOW": ("1.15", "2.4"),
}

#: Channel-last frameworks; the others take NCHW input.
NHWC_FRAMEWORKS = frozenset({"TENSORFLOW"})

#: A model input (tensor) name, as Neo's DataInputConfig and the Panorama descriptor take it.
INPUT_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_:.]*$"
INPUT_NAME_RULE = "a tensor name: letters, digits, _ . : starting with a letter or _"
INPUT_NAME_MAX = 64

#: Every bucket the pipeline uses carries this in its name: the Panorama service role policies
#: scope S3 to ``arn:aws:s3:::*aws-panorama*``.
BUCKET_NAME_MARKER = "aws-panorama"

#: Where data sets land in the data bucket unless the config says otherwise (``runs.dataset_prefix``):
#: one or more folders, each of S3's safe key characters.
DEFAULT_DATASET_PREFIX = "datasets/"
DATASET_PREFIX_PATTERN = r"^([A-Za-z0-9!_.*'()-]+/)+$"
#: The object whose arrival in a data set's folder starts a run (``<prefix><data set>/_READY``).
READY_MARKER = "_READY"

#: The largest input dimension accepted: far beyond any camera frame a model is fed, small enough that
#: a typo (224224) is caught before Neo or the appliance try to allocate it.
MAX_INPUT_DIMENSION = 8192

#: How much of a value given by a user an error message repeats.
SHOWN_CHARS = 200

_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 12
_REPR.maxlevel = 3


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value``'s repr for a message, bounded.

    Built without rendering all of a huge value, cut with an ellipsis at ``limit`` characters, and
    followed by the value's own size when it was cut.
    """
    text = _REPR.repr(value)
    size = len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else None
    cut = len(text) > limit or (size is not None and "..." in text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not cut:
        return text
    unit = "characters" if isinstance(value, str) else "bytes" if isinstance(value, bytes) else "items"
    return f"{text} ({size} {unit})" if size is not None else text


def bounded(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters with an ellipsis and the original length."""
    if len(text) <= limit:
        return text
    note = f"… ({len(text)} characters)"
    return text[: max(0, limit - len(note))] + note


def input_name_problem(name: object) -> str | None:
    """Why ``name`` is not a usable model input name, or None."""
    if not isinstance(name, str) or len(name) > INPUT_NAME_MAX or not _INPUT_NAME.match(name):
        return f"{INPUT_NAME_RULE} (at most {INPUT_NAME_MAX} characters)"
    return None


def layout_problem(shape: Sequence[object], framework: str | None) -> str | None:
    """Why ``shape`` is not a model input for ``framework`` (4 positive ints, NCHW or NHWC), or None.

    ``framework`` None checks only the dimensions (its own problem is reported elsewhere).
    """
    if isinstance(shape, str | bytes) or len(shape) != 4:
        return f"must have 4 dimensions, [N, C, H, W] or [N, H, W, C]; got {len(shape)}"
    if any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        return "every dimension must be a positive integer"
    if any(d > MAX_INPUT_DIMENSION for d in shape):  # type: ignore[operator]
        return f"every dimension must be at most {MAX_INPUT_DIMENSION}"
    if framework is None:
        return None
    if framework in NHWC_FRAMEWORKS:
        if shape[3] not in (1, 3):
            return f"{framework} takes NHWC input [N, H, W, C] with C = 1 or 3; got C = {shape[3]}"
    elif shape[1] not in (1, 3):
        hint = " (this looks like NHWC)" if shape[3] in (1, 3) else ""
        return f"{framework} takes NCHW input [N, C, H, W] with C = 1 or 3{hint}"
    return None


def iso_utc(moment: datetime.datetime | float) -> str:
    """``moment`` (a datetime, or epoch seconds) as Step Functions writes times: UTC, milliseconds, ``Z``."""
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

"""What every config section is: a frozen pydantic model that refuses unknown fields and non-finite numbers."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.functional_serializers import PlainSerializer

V = TypeVar("V")
#: A frozen model's mapping field: read-only after validation, a plain dict when dumped.
ReadOnlyMapping = Annotated[Mapping[str, V], AfterValidator(lambda v: MappingProxyType(dict(v))), PlainSerializer(dict)]


class Section(BaseModel):
    """A config section."""

    # allow_inf_nan=False: .nan and .inf are refused in every number (thresholds, hyperparameters).
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)

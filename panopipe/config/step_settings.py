"""What the pipeline's Lambda steps are told of the config: the model's own dump, as one JSON document.

The one serializer: the sections the handlers use, dumped by pydantic (computed fields included)
into the ``STEP_SETTINGS`` variable; ``lambda_handlers.settings.parse`` is the one parser on the
other side. Nothing maps fields by hand, so a field added to the schema reaches the handlers (and
fails their strict parser until they declare it).
"""

from __future__ import annotations

import json

from panopipe.config.schema import EnvironmentConfig

#: Sections (and computed fields) of the config the handlers read.
STEP_SECTIONS = frozenset(
    {"prefix", "model", "training", "preparation", "compilation", "devices", "runs", "training_timeout_seconds"}
)


def step_settings_json(config: EnvironmentConfig) -> str:
    """Compact JSON of :data:`STEP_SECTIONS` (Lambda allows 4 KB of variables per function)."""
    return json.dumps(config.model_dump(mode="json", include=set(STEP_SECTIONS)), separators=(",", ":"), sort_keys=True)

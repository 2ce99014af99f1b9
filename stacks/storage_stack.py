"""The stateful stack: buckets and key, retained, with termination protection outside dev."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from panopipe.config import PipelineConfig
from stacks.storage import PipelineStorage


class StorageStack(Stack):
    """Holds :class:`PipelineStorage`; other stacks receive its bucket and key objects."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            termination_protection=config.protect_stateful,
            description=f"panorama-pipeline {config.environment}: data and artifact storage (stateful)",
            **kwargs,
        )
        self.storage = PipelineStorage(self, "Storage", config=config)

"""Stateless stack for the roles that SageMaker and Panorama assume."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from panopipe.config import PipelineConfig
from stacks.service_roles import ServiceRoles
from stacks.storage import PipelineStorage


class ServiceRolesStack(Stack):
    """Holds :class:`ServiceRoles`, scoped to the storage stack's buckets and key."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        storage: PipelineStorage,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: SageMaker and Panorama service roles",
            **kwargs,
        )
        self.roles = ServiceRoles(self, "Roles", config=config, storage=storage)

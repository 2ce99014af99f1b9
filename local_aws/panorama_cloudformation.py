"""``AWS::Panorama::Package`` in moto's CloudFormation, backed by the local Panorama service.

The stacks declare the application's packages as ``AWS::Panorama::Package`` resources and pass
their ids on; moto has no such type (it would skip the resource and leave its Ref unresolved), so
this model creates them in the local service and the real templates deploy unchanged.

moto finds resource types among ``CloudFormationModel.__subclasses__()`` and caches that table on
first use (``moto.cloudformation.parsing.get_model_map``); :func:`install_cloudformation_model`
binds the backend and clears the cache, so call it before the first stack is created (calling it
later works too: the cache is rebuilt).

As in CloudFormation's resource schema: ``Ref`` is the PackageId (the primary identifier); GetAtt
gives PackageId, Arn, CreatedTime (epoch seconds) and StorageLocation.{Bucket, RepoPrefixLocation,
GeneratedPrefixLocation, BinaryPrefixLocation, ManifestPrefixLocation}; a new PackageName replaces
the package, Tags update in place; delete removes the package and its versions.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel

from local_aws.panorama_backend import PanoramaBackend

_ATTRIBUTES = frozenset(
    {
        "PackageId",
        "Arn",
        "CreatedTime",
        "StorageLocation.Bucket",
        "StorageLocation.RepoPrefixLocation",
        "StorageLocation.GeneratedPrefixLocation",
        "StorageLocation.BinaryPrefixLocation",
        "StorageLocation.ManifestPrefixLocation",
    }
)

_backend: PanoramaBackend | None = None


def install_cloudformation_model(backend: PanoramaBackend) -> None:
    """Let moto's CloudFormation create ``AWS::Panorama::Package`` resources in ``backend``."""
    global _backend
    _backend = backend
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


def _installed_backend() -> PanoramaBackend:
    """The backend CloudFormation creates packages in (raises until one is installed)."""
    if _backend is None:
        raise RuntimeError("no local Panorama backend: call install_cloudformation_model(backend) first")
    return _backend


def _tags(properties: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in properties.get("Tags") or []}


class _PanoramaPackage(CloudFormationModel):
    """One ``AWS::Panorama::Package`` of a stack: a package of the local Panorama service."""

    def __init__(self, backend: PanoramaBackend, package_id: str) -> None:
        self.backend = backend
        self.package_id = package_id
        self.described = backend.describe_package(package_id)

    @property
    def physical_resource_id(self) -> str:
        """``Ref``: the PackageId."""
        return self.package_id

    @staticmethod
    def cloudformation_name_type() -> str:
        """The property that names the resource."""
        return "PackageName"

    @staticmethod
    def cloudformation_type() -> str:
        """The resource type this model implements."""
        return "AWS::Panorama::Package"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        """Whether ``Fn::GetAtt`` knows ``attr``."""
        return attr in _ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        """``Fn::GetAtt`` values, from the package as created."""
        if attribute_name not in _ATTRIBUTES:
            raise UnformattedGetAttTemplateException()
        if attribute_name == "CreatedTime":
            return int(self.described["CreatedTime"].timestamp())
        if attribute_name.startswith("StorageLocation."):
            return self.described["StorageLocation"][attribute_name.split(".", 1)[1]]
        return self.described[attribute_name]

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _PanoramaPackage:
        """Create the package (PackageName from the template, else the generated resource name)."""
        properties = cloudformation_json.get("Properties") or {}
        backend = _installed_backend()
        created = backend.create_package(str(properties.get("PackageName") or resource_name), _tags(properties))
        return cls(backend, created["PackageId"])

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: _PanoramaPackage,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> _PanoramaPackage:
        """Tags change in place; a new PackageName (create-only) replaces the package."""
        properties = cloudformation_json.get("Properties") or {}
        name = str(properties.get("PackageName") or new_resource_name)
        if name == original_resource.described["PackageName"]:
            original_resource.backend.tag_package(original_resource.package_id, _tags(properties))
            return cls(original_resource.backend, original_resource.package_id)
        replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
        original_resource.backend.delete_package(original_resource.package_id)
        return replacement

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        """Delete by physical id (the PackageId)."""
        _installed_backend().delete_package(resource_name)

    def delete(self, account_id: str, region_name: str) -> None:
        """Stack deletion: remove the package."""
        self.backend.delete_package(self.package_id)

    def is_created(self) -> bool:
        """Packages are ready as soon as they are created."""
        return True

"""What a device needs to run a deployed instance, read from the local Panorama service's records.

The graph of the instance names package versions; the device downloads their assets — the code
package's container, the model package's model — from the packages' storage, where registration put
them. The local appliance reads them from the same place (the emulator's S3), so it runs exactly what
was registered and pinned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from local_aws.appliance.graph import plan
from local_aws.appliance.runner import Deployment

if TYPE_CHECKING:
    from local_aws.panorama_object_store import MotoS3Store
    from local_aws.panorama_records import InstanceRecord, PackageRecord


def deployment_of(
    instance: InstanceRecord,
    packages: Mapping[str, PackageRecord],
    store: MotoS3Store,
    device_name: str,
    region: str,
) -> Deployment:
    """The instance's graph plan and the assets of the package versions it pins (ValueError: cannot run)."""
    assets: dict[str, tuple[str, bytes]] = {}  # package name -> (implementation type, asset)
    for package_id, version, patch in instance.uses:
        package = packages[package_id]
        manifest = package.versions[(version, patch)].manifest or {}
        for asset in manifest.get("nodePackage", {}).get("assets", []):
            for implementation in asset.get("implementations", []):
                if implementation["type"] not in ("container", "model"):
                    continue
                key = f"{package.storage['BinaryPrefixLocation']}/{implementation['assetUri']}"
                data = store.read(package.storage["Bucket"], key)
                if data is None:
                    raise ValueError(f"asset {implementation['assetUri']} of package {package.name} is gone")
                assets[package.name] = (implementation["type"], data)
    if instance.graph is None:
        raise ValueError("the instance has no application graph")
    containers = {name for name, (kind, _) in assets.items() if kind == "container"}
    graph_plan = plan(instance.graph, instance.overrides, containers)
    models = {}
    for node, package_name in graph_plan.models.items():
        kind, data = assets.get(package_name, ("", b""))
        if kind != "model":
            raise ValueError(f"model node {node}: package {package_name} has no model asset")
        models[node] = data
    from local_aws import moto_patches  # the emulator's endpoint, for the application's AWS calls

    patches = moto_patches.installed()
    return Deployment(
        instance_id=instance.instance_id,
        device_name=device_name,
        plan=graph_plan,
        code_asset=assets[graph_plan.code_package][1],
        model_assets=models,
        endpoint=patches.endpoint if patches is not None else None,
        region=region,
    )

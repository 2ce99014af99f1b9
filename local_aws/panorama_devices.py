"""Devices of the local Panorama service: the appliances a local run deploys to, from the config.

There is no appliance locally, and devices cannot be created through the API (the real service
provisions them with ProvisionDevice and a physical appliance). The emulator is started with the
config's devices (``--panorama-device``); each is provisioned and online, so ListDevices and
DescribeDevice answer what the pipeline checks before it deploys. A device given only by name gets a
deterministic id (:func:`~local_aws.panorama_records.device_id_for_name`), so every start of the
emulator with the same config has the same device ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from local_aws.panorama_errors import ResourceNotFoundException
from local_aws.panorama_records import BackendState, DeviceRecord, device_id_for_name, now

_SORT_KEYS = {
    "DEVICE_ID": "DeviceId",
    "CREATED_TIME": "CreatedTime",
    "NAME": "Name",
    "DEVICE_AGGREGATED_STATUS": "DeviceAggregatedStatus",
}


def device_records(devices: Iterable[str]) -> dict[str, DeviceRecord]:
    """The appliances, by id: each a name, or ``id:<device id>`` (then named by its id)."""
    records: dict[str, DeviceRecord] = {}
    for spec in devices:
        spec = spec.strip()
        if not spec or spec == "id:":
            raise ValueError(f"a device is a name or id:<device id>, not {spec!r}")
        device_id = spec[3:] if spec.startswith("id:") else device_id_for_name(spec)
        name = device_id if spec.startswith("id:") else spec
        serial = str(int(hashlib.sha256(device_id.encode()).hexdigest(), 16))[:12]
        records[device_id] = DeviceRecord(device_id, name, now(), serial)
    return records


class DeviceOperations(BackendState):
    """ListDevices and DescribeDevice, and the device lookups of the other operations."""

    def _device(self, device: str, by_name: bool = False) -> DeviceRecord:
        found = self._devices.get(device)
        if found is None and by_name:
            found = next((d for d in self._devices.values() if d.name == device), None)
        if found is None:
            raise ResourceNotFoundException(f"device {device} not found", device, "Device")
        return found

    @staticmethod
    def _device_summary(device: DeviceRecord) -> dict[str, Any]:
        return {
            "DeviceId": device.device_id,
            "Name": device.name,
            "Brand": "AWS_PANORAMA",
            "Type": "PANORAMA_APPLIANCE",
            "ProvisioningStatus": "SUCCEEDED",
            "DeviceAggregatedStatus": "ONLINE",
            "CurrentSoftware": "6.2.1",
            "CreatedTime": device.created,
            "LastUpdatedTime": device.created,
            "Tags": {},
        }

    def list_devices(
        self,
        name_filter: str | None = None,
        status_filter: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> list[dict[str, Any]]:
        """Device summaries: names starting with ``name_filter``, sorted as asked."""
        with self._lock:
            devices = [self._device_summary(d) for d in self._devices.values() if d.name.startswith(name_filter or "")]
        if status_filter:
            devices = [d for d in devices if d["DeviceAggregatedStatus"] == status_filter]
        key = _SORT_KEYS.get(sort_by or "CREATED_TIME", "CreatedTime")
        devices.sort(key=lambda d: (d[key], d["DeviceId"]), reverse=sort_order == "DESCENDING")
        return devices

    def describe_device(self, device_id: str) -> dict[str, Any]:
        """DescribeDevice: the appliance, online and provisioned."""
        with self._lock:
            device = self._device(device_id)
            described = self._device_summary(device)
        del described["LastUpdatedTime"]
        described.update(
            {
                "Arn": f"arn:aws:panorama:{self.region}:{self.account_id}:device/{device.device_id}",
                "SerialNumber": device.serial,
                "DeviceConnectionStatus": "ONLINE",
                "LatestSoftware": described["CurrentSoftware"],
                "CurrentNetworkingStatus": {
                    "Ethernet0Status": {"ConnectionStatus": "CONNECTED", "IpAddress": "127.0.0.1"},
                    "LastUpdatedTime": device.created,
                },
            }
        )
        return described

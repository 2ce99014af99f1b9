"""Devices of the local Panorama service: the appliances a local run deploys to, from the config.

There is no appliance locally, and devices cannot be created through the API (the real service
provisions them with ProvisionDevice and a physical appliance). The emulator is started with the
config's devices (``--panorama-device``, or ``--panorama-devices N`` for a fleet); each is
provisioned and online, so ListDevices and DescribeDevice answer what the pipeline checks before it
deploys, Tags included (a config's tag group is resolved from them). A device given only by name
gets a deterministic id (:func:`~local_aws.panorama_records.device_id_for_name`), so every start of
the emulator with the same config has the same device ids.

A device spec is ``NAME[,key=value...]`` or ``id:<device id>[,key=value...]``: a device name or id
matches the model's ``^[a-zA-Z0-9_-]+$`` (at most 255 characters), so the first comma ends it; each
tag key (1-128 characters) and value (0-256) is percent-decoded, so a ``,``, ``=`` or ``%`` inside
one is written ``%2C``, ``%3D``, ``%25`` (:func:`device_spec` writes them so); at most 50 tags, the
model's maximum. A device given twice is one device carrying the tags of both specs (a key given
two values is refused). ``N[,key=value...]`` (:func:`numbered_devices`) stands for
``local-device-1`` … ``local-device-N``, each with those tags, N from 1 to :data:`MAX_LOCAL_DEVICES`.
ListDevices pages at most 25 devices per call, as AWS does (``panorama_service``), so a large
local fleet is resolved through NextToken as a real one is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from local_aws.panorama_errors import ResourceNotFoundException
from local_aws.panorama_records import BackendState, DeviceRecord, device_id_for_name, now

_SORT_KEYS = {
    "DEVICE_ID": "DeviceId",
    "CREATED_TIME": "CreatedTime",
    "NAME": "Name",
    "DEVICE_AGGREGATED_STATUS": "DeviceAggregatedStatus",
}
#: DeviceName and DeviceId of the carried model (both at most 255 characters).
_DEVICE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
_TAG_KEY_LENGTH, _TAG_VALUE_LENGTH, _MAX_TAGS = 128, 256, 50  # TagKey, TagValue, TagMap of the model
_ENCODED = {"%": "%25", ",": "%2C", "=": "%3D"}
#: The names :func:`numbered_devices` gives: ``local-device-1`` … ``local-device-N``.
NUMBERED_PREFIX = "local-device-"
#: The most devices one ``N`` spec (``--panorama-devices``, ``panopipe local up --devices``) registers.
MAX_LOCAL_DEVICES = 1000


@dataclass(frozen=True)
class DeviceSpec:
    """One parsed device spec: the device's id, its name and its tags."""

    device_id: str
    name: str
    tags: Mapping[str, str]


def _encode(text: str) -> str:
    return "".join(_ENCODED.get(character, character) for character in text)


def device_spec(device: str, tags: Mapping[str, str] | None = None) -> str:
    """The spec of ``device`` (a name, or ``id:<device id>``) carrying ``tags``, each key and value encoded."""
    return ",".join([device, *(f"{_encode(key)}={_encode(value)}" for key, value in (tags or {}).items())])


def _tags(spec: str, items: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        raw_key, equals, raw_value = item.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)
        if not equals or not key:
            raise ValueError(f"device {spec!r}: a tag is key=value with a key, not {item!r}")
        if len(key) > _TAG_KEY_LENGTH or len(value) > _TAG_VALUE_LENGTH:
            raise ValueError(
                f"device {spec!r}: tag {key[:40]!r} is too long (keys 1-{_TAG_KEY_LENGTH} characters, "
                f"values 0-{_TAG_VALUE_LENGTH})"
            )
        if key in tags:
            raise ValueError(f"device {spec!r}: tag {key!r} is given twice")
        tags[key] = value
    if len(tags) > _MAX_TAGS:
        raise ValueError(f"device {spec!r}: {len(tags)} tags, at most {_MAX_TAGS}")
    return tags


def parse_device(spec: str) -> DeviceSpec:
    """The device of ``NAME[,key=value...]`` or ``id:<device id>[,key=value...]``; ValueError if it is none."""
    target, *items = spec.split(",")
    target = target.strip()
    by_id = target.startswith("id:")
    name = target[3:] if by_id else target
    if not _DEVICE_NAME.fullmatch(name):
        raise ValueError(
            f"a device is NAME[,key=value...] or id:<device id>[,key=value...], its name or id 1-255 letters, "
            f"digits, - and _; not {spec!r}"
        )
    return DeviceSpec(name if by_id else device_id_for_name(name), name, _tags(spec, items))


def numbered_devices(count: int, tags: Mapping[str, str] | None = None) -> list[str]:
    """Specs of ``local-device-1`` … ``local-device-<count>``, each carrying ``tags``."""
    if not 1 <= count <= MAX_LOCAL_DEVICES:
        raise ValueError(f"{count} devices: give 1 to {MAX_LOCAL_DEVICES}")
    return [device_spec(f"{NUMBERED_PREFIX}{number}", tags) for number in range(1, count + 1)]


def parse_numbered(text: str) -> list[str]:
    """The specs ``N[,key=value...]`` stands for (:func:`numbered_devices`); ValueError if it is not that."""
    count, *items = text.split(",")
    if not count.strip().isdigit():
        raise ValueError(f"a fleet is N[,key=value...], N a number of devices; not {text!r}")
    return numbered_devices(int(count), _tags(text, items))


def device_records(devices: Iterable[str]) -> dict[str, DeviceRecord]:
    """The appliances, by id, in the order first given; each spec is parsed by :func:`parse_device`."""
    records: dict[str, DeviceRecord] = {}
    for spec in devices:
        device = parse_device(spec)
        known = records.get(device.device_id)
        if known is None:
            serial = str(int(hashlib.sha256(device.device_id.encode()).hexdigest(), 16))[:12]
            records[device.device_id] = DeviceRecord(device.device_id, device.name, now(), serial, dict(device.tags))
            continue
        clash = sorted(key for key, value in device.tags.items() if known.tags.get(key, value) != value)
        if clash:
            raise ValueError(f"device {device.name} is given twice with different values of tag(s) {', '.join(clash)}")
        known.tags.update(device.tags)
        if len(known.tags) > _MAX_TAGS:
            raise ValueError(f"device {device.name}: {len(known.tags)} tags, at most {_MAX_TAGS}")
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
            "Tags": dict(device.tags),
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

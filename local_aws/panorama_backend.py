"""The local Panorama service's state and rules: one object per account and Region, behind one lock.

Panorama is not in moto (nor in current botocore), and the pipeline's packaging and deployment
steps cannot be exercised without it, so the project carries its own. This class puts together the
operations of ``panorama_devices``, ``panorama_packages`` and ``panorama_instances``; it knows no
HTTP (``panorama_protocol`` and ``panorama_service`` serve it). Methods take Python arguments and
return dicts shaped like the API's responses (member names of the carried model), built under the
lock so a caller never sees a half-updated record; errors are ``panorama_errors`` classes.
"""

from __future__ import annotations

from collections.abc import Iterable

from local_aws.appliance import Appliance, ApplianceSettings
from local_aws.panorama_devices import device_records
from local_aws.panorama_instances import InstanceOperations
from local_aws.panorama_records import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Progress


class PanoramaBackend(InstanceOperations):
    """Everything the local Panorama service knows, for one account and Region."""

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        *,
        progress: Progress | None = None,
        devices: Iterable[str] = (),
        appliance: ApplianceSettings | None = None,
    ) -> None:
        """A service with these appliances (each a name, or ``id:<device id>``) and no packages yet.

        With ``appliance`` the devices run what is deployed to them (``local_aws.appliance``); without,
        a deployed application only reports RUNNING (fast, for the many tests that deploy).
        """
        super().__init__(account_id, region, progress)
        self._devices = device_records(devices)
        self.appliance = Appliance(appliance) if appliance is not None else None

    def reset(self) -> None:
        """Forget packages, application instances and pending failures (devices and settings stay).

        The devices' applications stop (the emulator resets, and stops, through this).
        """
        if self.appliance is not None:
            self.appliance.stop_all()
        with self._lock:
            self._packages.clear()
            self._instances.clear()
            self._failures.clear()

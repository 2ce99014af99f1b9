"""The local Panorama service's records and the state they live in, shared by its operation modules.

Panorama is asynchronous: a registered package version is REGISTER_PENDING before it is
REGISTER_COMPLETED or FAILED, and an application instance moves from DEPLOYMENT_PENDING through
DEPLOYMENT_IN_PROGRESS to an end status. The pipeline's wait loops exist for that, so the local
service keeps the same statuses; they advance per describe (:class:`Progress`), not by time, so a
test or a local run decides how many polls each status lasts.

:class:`BackendState` is the one lock and the dictionaries that ``panorama_devices``,
``panorama_packages`` and ``panorama_instances`` operate on (``panorama_backend`` puts them together).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from local_aws.panorama_object_store import MotoS3Store

if TYPE_CHECKING:
    from local_aws.appliance import Appliance

#: moto's default account: what CloudFormation's ``AWS::AccountId`` is in the emulator.
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
_STATUS_DESCRIPTION_LIMIT = 255

REGISTER_PENDING, REGISTER_COMPLETED, REGISTER_FAILED = "REGISTER_PENDING", "REGISTER_COMPLETED", "FAILED"
DEPLOYMENT_PENDING, DEPLOYMENT_IN_PROGRESS = "DEPLOYMENT_PENDING", "DEPLOYMENT_IN_PROGRESS"
DEPLOYMENT_SUCCEEDED, DEPLOYMENT_FAILED, REMOVAL_SUCCEEDED = (
    "DEPLOYMENT_SUCCEEDED",
    "DEPLOYMENT_FAILED",
    "REMOVAL_SUCCEEDED",
)


@dataclass(frozen=True)
class Progress:
    """How many describes a resource needs before it reaches its final status (0: at the first one).

    A package version answers REGISTER_PENDING to its first ``registration_describes``
    DescribePackageVersion calls; an application instance answers DEPLOYMENT_PENDING to its first
    ``pending_describes`` DescribeApplicationInstance calls, then DEPLOYMENT_IN_PROGRESS to the next
    ``in_progress_describes``.
    """

    registration_describes: int = 1
    pending_describes: int = 1
    in_progress_describes: int = 1


def now() -> dt.datetime:
    """The current time, as the service stamps records (UTC)."""
    return dt.datetime.now(dt.UTC)


def random_id(prefix: str) -> str:
    """A new resource id shaped like the service's (``package-…``, ``applicationInstance-…``)."""
    return prefix + base64.b32encode(uuid.uuid4().bytes).decode("ascii").lower().rstrip("=")[:26]


def short_text(text: str) -> str:
    """A status description within the model's 255 characters."""
    text = " ".join(text.split())
    return text if len(text) <= _STATUS_DESCRIPTION_LIMIT else text[: _STATUS_DESCRIPTION_LIMIT - 1] + "…"


def device_id_for_name(name: str) -> str:
    """The deterministic id the local service gives a device configured only by name."""
    digest = base64.b32encode(hashlib.sha256(name.encode("utf-8")).digest()).decode("ascii").lower()
    return f"device-{digest[:26]}"


@dataclass
class DeviceRecord:
    """One appliance (always provisioned and online) and the tags ListDevices and DescribeDevice report."""

    device_id: str
    name: str
    created: dt.datetime
    serial: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VersionRecord:
    """One registered patch version; ``outcome`` is the status it reaches after its pending describes."""

    version: str
    patch: str
    registered: dt.datetime
    pending: int
    outcome: str
    outcome_description: str | None
    manifest: dict[str, Any] | None
    status: str = REGISTER_PENDING
    description: str | None = None


@dataclass
class PackageRecord:
    """One package with its storage location, versions and latest patch per version."""

    package_id: str
    name: str
    arn: str
    created: dt.datetime
    tags: dict[str, str]
    storage: dict[str, str]
    versions: dict[tuple[str, str], VersionRecord] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)


@dataclass
class InstanceRecord:
    """One application instance; ``uses`` are the (package id, version, patch) it runs."""

    instance_id: str
    arn: str
    name: str
    description: str | None
    device_id: str
    created: dt.datetime
    role_arn: str | None
    replaces: str | None
    tags: dict[str, str]
    contexts: tuple[str, ...]
    uses: frozenset[tuple[str, str, str]]
    fail_reason: str | None
    crash_reason: str | None = None  # deploys, then the application stops: HealthStatus ERROR
    status: str = DEPLOYMENT_PENDING
    health: str = "NOT_AVAILABLE"  # once deployed: RUNNING, or ERROR for a crashed application
    status_description: str = "deployment requested"
    updated: dt.datetime = field(default_factory=now)
    describes: int = 0
    graph: dict[str, Any] | None = None  # the manifest and overrides, for the local appliance
    overrides: dict[str, Any] | None = None


class BackendState:
    """Everything the local Panorama service knows, for one account and Region, behind one lock."""

    def __init__(self, account_id: str, region: str, progress: Progress | None) -> None:
        self.account_id, self.region = account_id, region
        self.store = MotoS3Store(account_id)
        self.progress = progress or Progress()
        self._lock = threading.RLock()
        self._devices: dict[str, DeviceRecord] = {}
        self._packages: dict[str, PackageRecord] = {}
        self._instances: dict[str, InstanceRecord] = {}
        # device id -> (crash?, reason) of the next deployments to fail: DEPLOYMENT_FAILED, or deployed then ERROR
        self._failures: dict[str, list[tuple[bool, str]]] = {}
        #: The devices run deployed applications when set (``local_aws.appliance``); None: they only report.
        self.appliance: Appliance | None = None

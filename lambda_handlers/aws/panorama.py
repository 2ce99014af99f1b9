"""The one place that talks to AWS Panorama.

Panorama reached end of support on 2026-05-31 and botocore >= 1.43.38 no longer ships its client,
nor may the Lambda runtime's boto3. We carry the API model (``botocore_data/``, Apache-2.0, see its
NOTICE) and point botocore's loader at it. Swapping the deploy target later (Greengrass v2) means
replacing this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from mypy_boto3_panorama import PanoramaClient

MODEL_DIR = Path(__file__).resolve().parent.parent / "botocore_data"

_client: PanoramaClient | None = None


def new_client(region: str | None = None) -> PanoramaClient:
    """A Panorama client built from the carried model (endpoint from AWS_ENDPOINT_URL_PANORAMA if set)."""
    import boto3  # on first use, as in clients.py
    import botocore.session

    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    if str(MODEL_DIR) not in loader.search_paths:
        loader.search_paths.insert(0, str(MODEL_DIR))
    client = boto3.session.Session(botocore_session=session).client(
        "panorama", region_name=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    return cast("PanoramaClient", client)


def client() -> PanoramaClient:
    """The shared client of this process, created on first use."""
    global _client
    if _client is None:
        _client = new_client()
    return _client


def use_client(replacement: PanoramaClient | None) -> None:
    """Replace the shared client (tests pass a client wrapped in a botocore Stubber)."""
    global _client
    _client = replacement

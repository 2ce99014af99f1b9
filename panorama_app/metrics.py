"""Object counts → CloudWatch, without ever slowing or stopping the video loop.

The loop only records the latest counts; at most once per interval a snapshot goes on a small
queue that a background thread drains with PutMetricData. A full queue drops the oldest snapshot,
a failed call is logged: metrics are best effort, the video is not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)
METRIC_NAME = "ObjectCount"
_MAX_DATA_PER_CALL = 1000  # PutMetricData limit


class MetricsPublisher:
    """Publishes ``ObjectCount`` per device, stream and class, at most once per ``interval`` seconds."""

    def __init__(
        self,
        namespace: str,
        device_id: str,
        interval: float,
        client_factory: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        queue_size: int = 4,
    ) -> None:
        self.namespace = namespace
        self.device_id = device_id
        self.interval = interval
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._latest: dict[str, dict[str, int]] = {}
        self._last_sent: float | None = None
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=queue_size)
        self.published = 0
        self.failures = 0
        self.dropped = 0
        self._worker = threading.Thread(target=self._drain, name="metrics-publisher", daemon=True)
        self._worker.start()

    def record(self, stream_id: str, counts: dict[str, int]) -> None:
        """Remember this stream's counts; enqueue a snapshot when the interval has passed. Never blocks."""
        self._latest[stream_id] = dict(counts)
        now = self._clock()
        if self._last_sent is not None and now - self._last_sent < self.interval:
            return
        self._last_sent = now
        snapshot = self._metric_data()
        try:
            self._queue.put_nowait(snapshot)
        except queue.Full:
            try:
                self._queue.get_nowait()  # drop the oldest snapshot: the newest matters more
                self._queue.task_done()
                self.dropped += 1
            except queue.Empty:
                pass
            try:
                self._queue.put_nowait(snapshot)
            except queue.Full:
                self.dropped += 1

    def _metric_data(self) -> list[dict[str, Any]]:
        return [
            {
                "MetricName": METRIC_NAME,
                "Dimensions": [
                    {"Name": "DeviceId", "Value": self.device_id or "unknown"},
                    {"Name": "StreamId", "Value": stream},
                    {"Name": "Class", "Value": name},
                ],
                "Value": float(count),
                "Unit": "Count",
            }
            for stream, counts in sorted(self._latest.items())
            for name, count in sorted(counts.items())
        ]

    def _drain(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                if self._client is None:
                    self._client = self._client_factory()
                for start in range(0, len(data), _MAX_DATA_PER_CALL):
                    self._client.put_metric_data(
                        Namespace=self.namespace, MetricData=data[start : start + _MAX_DATA_PER_CALL]
                    )
                self.published += 1
            except Exception:  # best effort: log and keep going
                self.failures += 1
                LOG.warning("could not publish %d metric(s) to %s", len(data), self.namespace, exc_info=True)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued snapshots are handled (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after what is queued (a hanging call is abandoned after ``timeout``)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._worker.join(timeout)


def cloudwatch_factory(region: str) -> Callable[[], Any]:
    """Create the CloudWatch client lazily, in the worker (boto3 is imported only then)."""

    def create() -> Any:
        import boto3

        return boto3.client("cloudwatch", region_name=region or None)

    return create

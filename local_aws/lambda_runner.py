"""Python Lambda handlers in subprocesses, the way the Lambda service runs them (no Docker): the host side.

moto runs no function code without Docker (``moto_lambda``), and every step of the pipeline is a function.
:class:`LambdaRunner`, inside the emulator, extracts a function's zip once per code hash into a cache
directory (like ``/var/task``), starts ``python -I lambda_child.py <code dir> <handler> <result
file>`` with the function's environment plus Lambda's reserved variables (``AWS_ENDPOINT_URL`` back
to the emulator, fake credentials), feeds the event on stdin, enforces the function's timeout, and
turns the outcome into what Lambda's Invoke API returns: the payload, or ``X-Amz-Function-Error:
Unhandled`` with the JSON error document ``{errorMessage, errorType, requestId, stackTrace}``.

Lambda's error types are reproduced because Step Functions matches them: a handler exception's
``errorType`` is the exception's class name (what a state machine's Retry/Catch ``ErrorEquals``
name), a timeout is ``Sandbox.Timedout``, a process that exits or dies is ``Runtime.ExitError``
(import, handler and marshalling problems: ``lambda_child``).

Known differences from the real runtime (documented, accepted): the interpreter is the one running
the emulator (the project's venv, Python 3.11; the functions declare python3.14), so packages the
real runtime or a public layer provides (boto3, ``aws_lambda_powertools``) come from the venv; every
invocation is a cold start (a new process: module-level caches do not survive); the timeout covers
the import of the handler module too; memory size is reported, not enforced; there is no X-Ray
(Powertools' Tracer is switched off unless the function sets ``POWERTOOLS_TRACE_DISABLED`` itself).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local_aws.emulator_process import client_env

LOG = logging.getLogger(__name__)

#: The script that runs in the function's process (standard library only).
_CHILD = Path(__file__).resolve().with_name("lambda_child.py")
#: The runtime's error types (Lambda's spelling) the host reports, as Step Functions sees them.
_TIMEOUT_ERROR = "Sandbox.Timedout"
_EXIT_ERROR = "Runtime.ExitError"
_LOG_TAIL_BYTES = 4096  # what Invoke's LogType=Tail returns


@dataclass(frozen=True)
class FunctionSpec:
    """What the runner needs to know of one function (version)."""

    name: str
    arn: str
    handler: str  # "<module path>.<function>", e.g. "lambda_handlers.training.start_handler"
    code_zip: bytes
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 3.0
    memory_mb: int = 128
    region: str = "us-east-1"
    version: str = "$LATEST"
    runtime: str = "python3.14"
    log_group: str = ""


@dataclass(frozen=True)
class InvocationResult:
    """The outcome of one invocation, as the Invoke API reports it."""

    request_id: str
    payload: bytes  # the JSON document returned (the result, or the error document)
    function_error: str | None  # "Unhandled" when the function failed, else None
    log: str  # START/END/REPORT lines around the function's output, like CloudWatch Logs

    @property
    def error_type(self) -> str | None:
        """The error document's ``errorType`` (None on success)."""
        if self.function_error is None:
            return None
        try:
            document = json.loads(self.payload)
        except ValueError:
            return None
        return str(document.get("errorType")) if isinstance(document, dict) else None

    def log_tail(self) -> str:
        """The last 4 KB of the log, base64-encoded (Invoke's ``X-Amz-Log-Result`` with LogType=Tail)."""
        return base64.b64encode(self.log.encode("utf-8")[-_LOG_TAIL_BYTES:]).decode("ascii")


class _RunnerClosedError(RuntimeError):
    """The runner was closed (the emulator is stopping): no new invocations."""


class LambdaRunner:
    """Starts, times out and cleans up the subprocesses that run Python functions.

    Thread-safe: the emulator serves requests on many threads. :meth:`close` kills every running
    child (its whole process group) and refuses new invocations.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        cache_dir: Path,
        on_log: Callable[[FunctionSpec, InvocationResult], None] | None = None,
    ) -> None:
        """Run functions with this interpreter against the emulator at ``endpoint`` (``http://localhost:PORT``)."""
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir)
        self.on_log = on_log
        self._lock = threading.Lock()
        self._extract_lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False

    # -- public API --------------------------------------------------------------------------------

    def invoke(self, function: FunctionSpec, event: bytes | str | None) -> InvocationResult:
        """Run the handler once with ``event`` (JSON text) and wait for it (RequestResponse)."""
        data = event.encode("utf-8") if isinstance(event, str) else (event or b"")
        result = self._run(function, data if data.strip() else b"{}")
        if self.on_log is not None:
            self.on_log(function, result)
        return result

    def invoke_in_background(
        self,
        function: FunctionSpec,
        event: bytes | str | None,
        on_done: Callable[[InvocationResult], None] | None = None,
    ) -> threading.Thread:
        """Run the handler on a thread and return at once (InvocationType=Event, asynchronous sources)."""
        self._check_open()

        def run() -> None:
            try:
                result = self.invoke(function, event)
                if on_done is not None:
                    on_done(result)
            except _RunnerClosedError:
                pass
            except Exception:  # an async invocation has no caller to report to: log it
                LOG.exception("asynchronous invocation of %s failed", function.name)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"lambda-{function.name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def pids(self) -> list[int]:
        """The process ids of the function processes running now."""
        with self._lock:
            return [child.pid for child in self._children]

    def close(self, join_seconds: float = 5.0) -> None:
        """Kill every running function process and refuse new invocations (idempotent)."""
        with self._lock:
            self._closed = True
            children = list(self._children)
            threads = list(self._threads)
        for child in children:
            _kill_group(child)
        deadline = time.monotonic() + join_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _RunnerClosedError("the Lambda runner is closed")

    def _code_dir(self, code_zip: bytes) -> Path:
        """The directory holding the extracted zip, extracted once per code hash (like /var/task)."""
        digest = hashlib.sha256(code_zip).hexdigest()
        target = self.cache_dir / digest
        if target.is_dir():
            return target
        with self._extract_lock:
            if target.is_dir():
                return target
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self.cache_dir))
            try:
                with zipfile.ZipFile(io.BytesIO(code_zip)) as archive:
                    archive.extractall(staging)  # extractall drops absolute and ".." member paths
                staging.replace(target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                if not target.is_dir():  # not another emulator process that extracted it first
                    raise
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return target

    def environment(self, function: FunctionSpec, request_id: str, code_dir: Path, deadline: float) -> dict[str, str]:
        """The child's environment: a minimal base, the function's variables, then Lambda's reserved ones."""
        log_stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{function.version}]{request_id.replace('-', '')}"
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",  # ignored under -I, kept for handlers that start Python children
            # The local AWS has no X-Ray: Powertools' Tracer (active tracing in the stacks) would try to
            # send segments nowhere. Off unless the function's own environment says otherwise.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        env.update({key: str(value) for key, value in function.environment.items()})
        # the emulator, fake credentials, and never the developer's real AWS configuration
        env.update(client_env(self.endpoint, function.region))
        env.update(
            {
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_VERSION": function.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group or f"/aws/lambda/{function.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
                "LAMBDA_TASK_ROOT": str(code_dir),
                "_HANDLER": function.handler,
                "_PANOPIPE_FUNCTION_ARN": function.arn,
                "_PANOPIPE_REQUEST_ID": request_id,
                "_PANOPIPE_DEADLINE": repr(deadline),
                "_PANOPIPE_PARENT_PID": str(os.getpid()),
            }
        )
        return env

    def _run(self, function: FunctionSpec, event: bytes) -> InvocationResult:
        self._check_open()
        request_id = str(uuid.uuid4())
        code_dir = self._code_dir(function.code_zip)
        started = time.monotonic()
        deadline = time.time() + function.timeout_seconds
        with tempfile.TemporaryDirectory(prefix="panopipe-invoke-") as scratch:
            result_path = Path(scratch) / "result.json"
            command = [
                sys.executable,
                "-I",
                str(_CHILD),
                str(code_dir),
                function.handler,
                str(result_path),
            ]
            child = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=code_dir,
                env=self.environment(function, request_id, code_dir, deadline),
                start_new_session=True,  # its own process group: a timeout kills the handler's children too
            )
            with self._lock:
                self._children.add(child)
                closed = self._closed
            if closed:  # close() ran between the check and the registration
                _kill_group(child)
            timed_out = False
            try:
                output, _ = child.communicate(event, timeout=function.timeout_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(child)
                output, _ = child.communicate()
            finally:
                with self._lock:
                    self._children.discard(child)
            if self._closed and not result_path.exists():
                raise _RunnerClosedError(f"the Lambda runner was closed while {function.name} ran")
            elapsed_ms = (time.monotonic() - started) * 1000
            text = output.decode("utf-8", errors="replace")
            if timed_out:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                message = f"Task timed out after {function.timeout_seconds:.2f} seconds"
                text += f"{stamp}Z {request_id} {message}\n"
                payload, failed = _error_document(_TIMEOUT_ERROR, f"RequestId: {request_id} Error: {message}"), True
            elif result_path.exists():
                payload, failed = _read_result(result_path)
            else:
                status = child.returncode
                how = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
                error = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
                payload, failed = _error_document(_EXIT_ERROR, error), True
        log = _format_log(function, request_id, text, elapsed_ms)
        return InvocationResult(
            request_id=request_id, payload=payload, function_error="Unhandled" if failed else None, log=log
        )


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (the child leads its own session)."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()


def _error_document(error_type: str, message: str, stack: list[str] | None = None) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack or []}).encode("utf-8")


def _read_result(path: Path) -> tuple[bytes, bool]:
    """(payload, failed) from the child's result file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if "error" in document:
        return json.dumps(document["error"]).encode("utf-8"), True
    return str(document["payload"]).encode("utf-8"), False


def _format_log(function: FunctionSpec, request_id: str, output: str, elapsed_ms: float) -> str:
    if output and not output.endswith("\n"):
        output += "\n"
    return (
        f"START RequestId: {request_id} Version: {function.version}\n"
        f"{output}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms\t"
        f"Billed Duration: {int(elapsed_ms) + 1} ms\tMemory Size: {function.memory_mb} MB\n"
    )

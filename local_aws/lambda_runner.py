"""Run Python Lambda handlers in subprocesses, the way the Lambda service runs them (no Docker).

Both halves of one small protocol live in this module:

- the host side, :class:`LambdaRunner`, used inside the emulator: it extracts a function's zip once per
  code hash into a cache directory, starts ``python -I lambda_runner.py <code dir> <handler> <result
  file>`` with the function's environment (plus ``AWS_ENDPOINT_URL`` back to the emulator and fake
  credentials), feeds the event on stdin, enforces the function's timeout, and turns the outcome into
  what Lambda's Invoke API returns: the payload, or ``X-Amz-Function-Error: Unhandled`` with the JSON
  error document ``{errorMessage, errorType, requestId, stackTrace}``;
- the child side, :func:`main`, run as a script in that subprocess: it puts the code directory first on
  ``sys.path`` (like ``/var/task``), imports ``<module>.<function>``, calls it with the event and a
  context object, and writes the result or the error (formatted as the Python runtime formats it) to
  the result file. Handler output (stdout and stderr) is the function's log.

Lambda's error types are reproduced because Step Functions matches them: a handler exception's
``errorType`` is the exception's class name (``Throttled``, ``TransientError`` …, what a state
machine's Retry/Catch ``ErrorEquals`` name), a timeout is ``Sandbox.Timedout``, a process that exits
or dies is ``Runtime.ExitError``, and import/handler/marshalling problems are ``Runtime.*``.

Known differences from the real runtime (documented, accepted): the interpreter is the one running
the emulator (the project's venv, Python 3.11; the functions declare python3.14), so packages the
real runtime or a public layer provides (boto3, ``aws_lambda_powertools``) come from the venv; every
invocation is a cold start (a new process: module-level caches do not survive); the timeout covers
the import of the handler module too; memory size is reported, not enforced.

The child side uses the standard library only and runs in isolated mode (``-I``: no ``PYTHON*``
variables, no user site, no script directory on ``sys.path``), so nothing of the project leaks into
the function's import path.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import importlib
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
import traceback
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

#: Fake credentials every function gets (the emulator accepts any).
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

#: The runtime's error types (Lambda's spelling), as Step Functions sees them in ``errorType``.
TIMEOUT_ERROR = "Sandbox.Timedout"
EXIT_ERROR = "Runtime.ExitError"
IMPORT_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
MALFORMED_HANDLER = "Runtime.MalformedHandlerName"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"

_LOG_TAIL_BYTES = 4096  # what Invoke's LogType=Tail returns


# --------------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------------


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


class RunnerClosedError(RuntimeError):
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
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        on_log: Callable[[FunctionSpec, InvocationResult], None] | None = None,
    ) -> None:
        """Run functions with ``python`` against the emulator at ``endpoint`` (``http://localhost:PORT``)."""
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir)
        self.python = python
        self.extra_env = dict(extra_env or {})
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
            except RunnerClosedError:
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
            raise RunnerClosedError("the Lambda runner is closed")

    def code_dir(self, code_zip: bytes) -> Path:
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
        }
        env.update({key: str(value) for key, value in function.environment.items()})
        env.update(FAKE_CREDENTIALS)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": function.region,
                "AWS_DEFAULT_REGION": function.region,
                # never read the developer's real AWS configuration or instance metadata
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
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
        env.update(self.extra_env)
        return env

    def _run(self, function: FunctionSpec, event: bytes) -> InvocationResult:
        self._check_open()
        request_id = str(uuid.uuid4())
        code_dir = self.code_dir(function.code_zip)
        started = time.monotonic()
        deadline = time.time() + function.timeout_seconds
        with tempfile.TemporaryDirectory(prefix="panopipe-invoke-") as scratch:
            result_path = Path(scratch) / "result.json"
            command = [
                self.python,
                "-I",
                str(Path(__file__).resolve()),
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
                raise RunnerClosedError(f"the Lambda runner was closed while {function.name} ran")
            elapsed_ms = (time.monotonic() - started) * 1000
            text = output.decode("utf-8", errors="replace")
            if timed_out:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                message = f"Task timed out after {function.timeout_seconds:.2f} seconds"
                text += f"{stamp}Z {request_id} {message}\n"
                payload, failed = _error_document(TIMEOUT_ERROR, f"RequestId: {request_id} Error: {message}"), True
            elif result_path.exists():
                payload, failed = _read_result(result_path)
            else:
                status = child.returncode
                how = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
                error = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
                payload, failed = _error_document(EXIT_ERROR, error), True
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


# --------------------------------------------------------------------------------------------------
# Child side (standard library only: runs as a script under `python -I`)
# --------------------------------------------------------------------------------------------------


class LambdaContext:
    """The handler's ``context`` argument (the attributes the Python runtime provides)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        """Read the invocation's identity from the environment the host set."""
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = environ.get("_PANOPIPE_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = environ.get("_PANOPIPE_REQUEST_ID", "")
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = float(environ.get("_PANOPIPE_DEADLINE", "0") or 0)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the host kills the invocation."""
        return max(0, int((self._deadline - time.time()) * 1000))


def _json_default(value: Any) -> Any:
    """What the Python runtime's marshaller accepts beyond plain JSON: Decimal."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _runtime_error(error_type: str, message: str, request_id: str, stack: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack or []}


def _load_handler(name: str, request_id: str) -> tuple[Callable[..., Any] | None, dict[str, Any] | None]:
    """(handler, None) or (None, runtime error document), as the Python runtime reports them."""
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as error:
        return None, _runtime_error(MALFORMED_HANDLER, f"Bad handler '{name}': {error}", request_id)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        return None, _runtime_error(IMPORT_ERROR, f"Unable to import module '{module_name}': {error}", request_id)
    except Exception as error:  # an exception while importing the module: the runtime's init error
        stack = traceback.format_list(traceback.extract_tb(error.__traceback__))
        return None, _runtime_error(type(error).__name__, str(error), request_id, stack)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        return None, _runtime_error(
            HANDLER_NOT_FOUND, f"Handler '{function_name}' missing on module '{module_name}'", request_id
        )
    return handler, None


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the emulator dies (even by SIGKILL), so no function outlives it."""
    parent = int(os.environ.get("_PANOPIPE_PARENT_PID", "0") or 0)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(137)


def main(argv: list[str]) -> int:
    """Child entry point: ``<code dir> <handler> <result file>``; the event is JSON on stdin."""
    _die_with_parent()
    code_dir, handler_name, result_path = argv
    sys.path.insert(0, code_dir)
    request_id = os.environ.get("_PANOPIPE_REQUEST_ID", "")
    document: dict[str, Any]
    raw = sys.stdin.buffer.read()
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError as error:
        document = {"error": _runtime_error(UNMARSHAL_ERROR, f"Unable to unmarshal input: {error}", request_id)}
    else:
        handler, failure = _load_handler(handler_name, request_id)
        if handler is None:
            document = {"error": failure}
        else:
            try:
                result = handler(event, LambdaContext(os.environ))
            except Exception as error:
                stack = traceback.format_list(traceback.extract_tb(error.__traceback__)[1:])  # drop this frame
                print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
                document = {"error": _runtime_error(type(error).__name__, str(error), request_id, stack)}
            else:
                try:
                    document = {"payload": json.dumps(result, default=_json_default)}
                except (TypeError, ValueError) as error:
                    message = f"Unable to marshal response: {error}"
                    document = {"error": _runtime_error(MARSHAL_ERROR, message, request_id)}
    sys.stdout.flush()
    sys.stderr.flush()
    Path(result_path).write_text(json.dumps(document), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

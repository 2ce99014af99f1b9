"""Python Lambda handlers in subprocesses: the child side, run as a script in the function's process.

``lambda_runner`` starts ``python -I lambda_child.py <code dir> <handler> <result file>``: this script
puts the code directory first on ``sys.path`` (like ``/var/task``), imports ``<module>.<function>``,
calls it with the event (JSON on stdin) and a context object, and writes the result or the error,
formatted as Lambda's Python runtime formats it, to the result file. Handler output (stdout and
stderr) is the function's log. The error types are the runtime's (``Runtime.ImportModuleError``,
``Runtime.HandlerNotFound``, ``Runtime.MarshalError`` …), because Step Functions matches them.

It uses the standard library only and runs in isolated mode (``-I``: no ``PYTHON*`` variables, no
user site, no script directory on ``sys.path``), so nothing of the project leaks into the function's
import path: a handler that imports what its zip does not contain fails here as it would in AWS.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_IMPORT_ERROR = "Runtime.ImportModuleError"
_HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
_MALFORMED_HANDLER = "Runtime.MalformedHandlerName"
_MARSHAL_ERROR = "Runtime.MarshalError"
_UNMARSHAL_ERROR = "Runtime.UnmarshalError"


class _LambdaContext:
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
        return None, _runtime_error(_MALFORMED_HANDLER, f"Bad handler '{name}': {error}", request_id)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        return None, _runtime_error(_IMPORT_ERROR, f"Unable to import module '{module_name}': {error}", request_id)
    except Exception as error:  # an exception while importing the module: the runtime's init error
        stack = traceback.format_list(traceback.extract_tb(error.__traceback__))
        return None, _runtime_error(type(error).__name__, str(error), request_id, stack)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        return None, _runtime_error(
            _HANDLER_NOT_FOUND, f"Handler '{function_name}' missing on module '{module_name}'", request_id
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


def _main(argv: list[str]) -> int:
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
        document = {"error": _runtime_error(_UNMARSHAL_ERROR, f"Unable to unmarshal input: {error}", request_id)}
    else:
        handler, failure = _load_handler(handler_name, request_id)
        if handler is None:
            document = {"error": failure}
        else:
            try:
                result = handler(event, _LambdaContext(os.environ))
            except Exception as error:
                stack = traceback.format_list(traceback.extract_tb(error.__traceback__)[1:])  # drop this frame
                print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
                document = {"error": _runtime_error(type(error).__name__, str(error), request_id, stack)}
            else:
                try:
                    document = {"payload": json.dumps(result, default=_json_default)}
                except (TypeError, ValueError) as error:
                    message = f"Unable to marshal response: {error}"
                    document = {"error": _runtime_error(_MARSHAL_ERROR, message, request_id)}
    sys.stdout.flush()
    sys.stderr.flush()
    Path(result_path).write_text(json.dumps(document), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

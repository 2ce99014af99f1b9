"""The appliance's model runtime: serves one MXNet model over stdin/stdout, in the ML environment.

Run by path with the ML environment's Python (``local_aws.ml.environment``: mxnet 1.9.1 needs numpy
< 1.24, the application's process has numpy 2), one server per model node, started by the
``panoramasdk`` stand-in when the application first calls the node. It imports nothing of the project.

Messages both ways are an 8-byte big-endian length, then one kind byte and a body:
``R`` + JSON (loaded: input names, load seconds), ``I`` + an ``.npz`` of named input arrays (a
request), ``O`` + an ``.npz`` of ``out0``, ``out1``… plus ``_seconds`` (the forward time),
``E`` + UTF-8 text (an error; after a load error the server exits). End of input ends the server.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_HEADER = struct.Struct(">Q")


def read_message(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """(kind, body) of the next message, or None at end of input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload[:1], payload[1:]


def write_message(stream: BinaryIO, kind: bytes, body: bytes) -> None:
    """Write one message and flush it."""
    stream.write(_HEADER.pack(len(body) + 1) + kind + body)
    stream.flush()


def pack_arrays(arrays: dict[str, Any]) -> bytes:
    """An uncompressed ``.npz`` of the arrays (readable by numpy 1.x and 2.x)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_arrays(body: bytes) -> dict[str, Any]:
    """The arrays of an ``.npz`` body."""
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _checkpoint(model_dir: Path) -> tuple[str, int]:
    """The (prefix, epoch) of the MXNet checkpoint: ``<prefix>-symbol.json`` and ``<prefix>-<epoch>.params``."""
    symbols = sorted(model_dir.rglob("*-symbol.json"))
    for symbol in symbols:
        prefix = str(symbol)[: -len("-symbol.json")]
        params = sorted(Path(prefix).parent.glob(Path(prefix).name + "-[0-9][0-9][0-9][0-9].params"))
        if params:
            return prefix, int(params[-1].name[-len("0000.params") : -len(".params")])
    found = sorted(p.name for p in model_dir.rglob("*") if p.is_file())
    raise RuntimeError(
        f"no MXNet checkpoint (<name>-symbol.json + <name>-<epoch>.params) in the model asset; it holds {found}"
    )


class Model:
    """An MXNet checkpoint bound for inference on the CPU (rebound when an input shape changes)."""

    def __init__(self, model_dir: Path) -> None:
        prefix, epoch = _checkpoint(model_dir)
        import mxnet as mx  # type: ignore[import-not-found,unused-ignore]

        self._mx = mx
        self.symbol, self.args, self.aux = mx.model.load_checkpoint(prefix, epoch)
        self.input_names = [
            name for name in self.symbol.list_arguments() if name not in self.args and not name.endswith("_label")
        ]
        self._module: Any = None
        self._shapes: list[tuple[str, tuple[int, ...]]] = []

    def __call__(self, inputs: dict[str, Any]) -> list[Any]:
        """The outputs of one forward pass on the named inputs."""
        mx = self._mx
        shapes = [(name, tuple(int(d) for d in array.shape)) for name, array in sorted(inputs.items())]
        if self._module is None or shapes != self._shapes:
            module = mx.mod.Module(symbol=self.symbol, data_names=[n for n, _ in shapes], label_names=None)
            module.bind(for_training=False, data_shapes=shapes)
            module.set_params(self.args, self.aux, allow_missing=True)
            self._module, self._shapes = module, shapes
        batch = mx.io.DataBatch([mx.nd.array(inputs[name]) for name, _ in shapes])
        self._module.forward(batch, is_train=False)
        return [output.asnumpy() for output in self._module.get_outputs()]


def _extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(into, filter="data")


def serve(model: Path, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Load ``model`` (a ``model.tar.gz`` or a folder), answer requests until end of input."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="panopipe-model-") as scratch:
        try:
            folder = model
            if model.is_file():
                folder = Path(scratch)
                _extract(model, folder)
            runtime = Model(folder)
        except Exception as error:
            write_message(stdout, b"E", f"the model node could not load its model: {error}".encode())
            return 1
        loaded = {"inputs": runtime.input_names, "seconds": time.perf_counter() - started}
        write_message(stdout, b"R", json.dumps(loaded).encode())
        while (message := read_message(stdin)) is not None:
            kind, body = message
            try:
                if kind != b"I":
                    raise ValueError(f"unknown request kind {kind!r}")
                begin = time.perf_counter()
                outputs = runtime(unpack_arrays(body))
                arrays = {f"out{i}": out for i, out in enumerate(outputs)}
                arrays["_seconds"] = np.array(time.perf_counter() - begin)
                write_message(stdout, b"O", pack_arrays(arrays))
            except Exception as error:
                write_message(stdout, b"E", f"{type(error).__name__}: {error}".encode())
    return 0


def main() -> int:
    """``python model_server.py MODEL``: serve on stdin/stdout (diagnostics on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="model.tar.gz of the model package, or its extracted folder")
    args = parser.parse_args()
    protocol = sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's print must not corrupt the protocol
    return serve(args.model, sys.stdin.buffer, protocol)


if __name__ == "__main__":
    sys.exit(main())

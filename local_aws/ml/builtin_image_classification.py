"""A local stand-in for SageMaker's built-in image-classification algorithm (runs in the ML environment).

The real algorithm is MXNet's image-classification recipe in a container: a pre-activation ResNet
(``num_layers``; ImageNet-style for images taller than 28 pixels, CIFAR-style 20/32/44/56/110 for
small ones) built as a symbol, trained with ``Module.fit`` from ``ImageRecordIter`` over the
``train`` and ``validation`` RecordIO channels, logging ``Epoch[N] Train-accuracy=...`` and
``Epoch[N] Validation-accuracy=...`` (which its metric definitions turn into ``train:accuracy`` and
``validation:accuracy``), and saving ``image-classification-symbol.json``,
``image-classification-0000.params`` and ``model-shapes.json`` into the model directory. This
module does the same on the CPU, with the job's hyperparameters (the documented ones; any other is
refused, as the real algorithm refuses it), so the metric gate judges a real accuracy. What it does
not do: GPUs, distributed training, pretrained weights, multi-label, early stopping, checkpoints.

The model takes raw RGB NCHW pixels (0-255), as the real algorithm's does: its network begins with
a BatchNorm of the data (``bn_data``) that learns the input's scale, and AWS's examples that run
its model outside SageMaker feed it unnormalized pixels. The application does the same for a
built-in model (graph parameter ``input_scaling`` = ``raw``, the config's default in builtin mode),
so a mismatch here would show as a failing local deployment rather than be hidden.

Run as the container would: ``python -m local_aws.ml.builtin_image_classification <job folder>``
(the folder standing for ``/opt/ml``). Exit 0 on success; otherwise the reason is written to
``output/failure`` (``ClientError: ...`` for a problem with the job's input) and the exit code is 1.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger("image-classification")

#: Every hyperparameter the algorithm documents (SageMaker developer guide, "Image Classification
#: Hyperparameters"), with the defaults this stand-in uses.
DEFAULTS: dict[str, str] = {
    "augmentation_type": "",
    "beta_1": "0.9",
    "beta_2": "0.999",
    "checkpoint_frequency": "0",
    "early_stopping": "false",
    "early_stopping_min_epochs": "10",
    "early_stopping_patience": "5",
    "early_stopping_tolerance": "0.0",
    "epochs": "30",
    "eps": "1e-8",
    "gamma": "0.9",
    "image_shape": "3,224,224",
    "kv_store": "device",
    "learning_rate": "0.1",
    "lr_scheduler_factor": "0.1",
    "lr_scheduler_step": "",
    "mini_batch_size": "32",
    "momentum": "0.9",
    "multi_label": "0",
    "num_layers": "152",
    "optimizer": "sgd",
    "precision_dtype": "float32",
    "resize": "",
    "top_k": "",
    "use_pretrained_model": "0",
    "use_weighted_loss": "0",
    "weight_decay": "0.0001",
}
REQUIRED = ("num_classes", "num_training_samples")
#: Input normalization given to the record reader: none (raw 0-255 pixels; ``bn_data`` normalizes).
NORMALIZE: dict[str, float] = {}
_IMAGENET_UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
_IMAGENET_UNITS |= {200: [3, 24, 36, 3], 269: [3, 30, 48, 8]}


class ClientError(Exception):
    """A problem with the job's input (hyperparameters, channels): the real algorithm's ClientError."""


# --------------------------------------------------------------------------------------------------
# The job's configuration (pure Python: tested in the project venv)
# --------------------------------------------------------------------------------------------------


def hyperparameters(raw: dict[str, str]) -> dict[str, str]:
    """The job's hyperparameters with defaults; unknown or missing required ones are a ClientError."""
    unknown = sorted(set(raw) - set(DEFAULTS) - set(REQUIRED))
    if unknown:
        raise ClientError(
            f"Additional hyperparameters are not allowed ({', '.join(map(repr, unknown))} was unexpected)"
        )
    missing = [name for name in REQUIRED if name not in raw]
    if missing:
        raise ClientError(f"Missing required hyperparameter(s): {', '.join(missing)}")
    values = DEFAULTS | {key: str(value) for key, value in raw.items()}
    for name in ("num_classes", "num_training_samples", "epochs", "mini_batch_size", "num_layers"):
        if not values[name].isdigit() or int(values[name]) < 1:
            raise ClientError(f"hyperparameter {name} = {values[name]!r}: must be a positive integer")
    if values["augmentation_type"] not in ("", "crop", "crop_color", "crop_color_transform"):
        raise ClientError(
            f"augmentation_type = {values['augmentation_type']!r}: crop, crop_color or crop_color_transform"
        )
    return values


def image_shape(text: str) -> tuple[int, int, int]:
    """``channels,height,width``."""
    try:
        channels, height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise ClientError(f"image_shape = {text!r}: must be num_channels,height,width") from None
    if channels != 3 or height < 8 or width < 8:
        raise ClientError(f"image_shape = {text!r}: 3 channels and at least 8x8 pixels")
    return channels, height, width


def network_plan(num_layers: int, height: int) -> tuple[list[int], list[int], bool]:
    """(units per stage, filters, bottleneck) of the ResNet the recipe builds for this depth and image height."""
    if height <= 28:  # CIFAR-style: 3 stages, 16-64 filters (or bottleneck for >= 164 layers)
        if (num_layers - 2) % 9 == 0 and num_layers >= 164:
            return [(num_layers - 2) // 9] * 3, [16, 64, 128, 256], True
        if (num_layers - 2) % 6 == 0 and num_layers < 164:
            return [(num_layers - 2) // 6] * 3, [16, 16, 32, 64], False
        raise ClientError(f"num_layers = {num_layers}: images of height {height} take 20, 32, 44, 56 or 110 layers")
    if num_layers not in _IMAGENET_UNITS:
        choices = ", ".join(map(str, _IMAGENET_UNITS))
        raise ClientError(f"num_layers = {num_layers}: images of height {height} take {choices} layers")
    bottleneck = num_layers >= 50
    filters = [64, 256, 512, 1024, 2048] if bottleneck else [64, 64, 128, 256, 512]
    return _IMAGENET_UNITS[num_layers], filters, bottleneck


def record_files(channel_dir: Path) -> list[Path]:
    """The channel's RecordIO files (``*.rec``, any depth), in name order."""
    return sorted(path for path in channel_dir.rglob("*.rec") if path.is_file())


# --------------------------------------------------------------------------------------------------
# The network and the training (mxnet: ML environment only)
# --------------------------------------------------------------------------------------------------


def _unit(mx: Any, data: Any, filters: int, stride: int, same_shape: bool, name: str, bottleneck: bool) -> Any:
    """A pre-activation residual unit."""
    sym = mx.sym
    bn = {"fix_gamma": False, "eps": 2e-5, "momentum": 0.9}
    bn1 = sym.BatchNorm(data, name=f"{name}_bn1", **bn)
    act1 = sym.Activation(bn1, act_type="relu", name=f"{name}_relu1")
    if bottleneck:
        conv1 = sym.Convolution(act1, num_filter=filters // 4, kernel=(1, 1), no_bias=True, name=f"{name}_conv1")
        act2 = sym.Activation(sym.BatchNorm(conv1, name=f"{name}_bn2", **bn), act_type="relu", name=f"{name}_relu2")
        conv2 = sym.Convolution(
            act2, num_filter=filters // 4, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), no_bias=True,
            name=f"{name}_conv2",
        )  # fmt: skip
        act3 = sym.Activation(sym.BatchNorm(conv2, name=f"{name}_bn3", **bn), act_type="relu", name=f"{name}_relu3")
        out = sym.Convolution(act3, num_filter=filters, kernel=(1, 1), no_bias=True, name=f"{name}_conv3")
    else:
        conv1 = sym.Convolution(
            act1, num_filter=filters, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), no_bias=True,
            name=f"{name}_conv1",
        )  # fmt: skip
        act2 = sym.Activation(sym.BatchNorm(conv1, name=f"{name}_bn2", **bn), act_type="relu", name=f"{name}_relu2")
        out = sym.Convolution(act2, num_filter=filters, kernel=(3, 3), pad=(1, 1), no_bias=True, name=f"{name}_conv2")
    shortcut = data
    if not same_shape:
        shortcut = sym.Convolution(
            act1, num_filter=filters, kernel=(1, 1), stride=(stride, stride), no_bias=True, name=f"{name}_sc"
        )
    return out + shortcut


def symbol(mx: Any, num_classes: int, num_layers: int, shape: tuple[int, int, int]) -> Any:
    """The recipe's ResNet as an MXNet symbol ending in ``softmax`` (SoftmaxOutput)."""
    units, filters, bottleneck = network_plan(num_layers, shape[1])
    sym = mx.sym
    data = sym.BatchNorm(sym.Variable("data"), fix_gamma=True, eps=2e-5, momentum=0.9, name="bn_data")
    if shape[1] <= 32:
        body = sym.Convolution(data, num_filter=filters[0], kernel=(3, 3), pad=(1, 1), no_bias=True, name="conv0")
    else:
        body = sym.Convolution(
            data, num_filter=filters[0], kernel=(7, 7), stride=(2, 2), pad=(3, 3), no_bias=True, name="conv0"
        )
        body = sym.Activation(sym.BatchNorm(body, fix_gamma=False, eps=2e-5, name="bn0"), act_type="relu", name="relu0")
        body = sym.Pooling(body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for stage, count in enumerate(units):
        stride = 1 if stage == 0 else 2
        body = _unit(mx, body, filters[stage + 1], stride, False, f"stage{stage + 1}_unit1", bottleneck)
        for unit in range(2, count + 1):
            body = _unit(mx, body, filters[stage + 1], 1, True, f"stage{stage + 1}_unit{unit}", bottleneck)
    body = sym.Activation(sym.BatchNorm(body, fix_gamma=False, eps=2e-5, name="bn1"), act_type="relu", name="relu1")
    pooled = sym.Pooling(body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    fc1 = sym.FullyConnected(sym.Flatten(pooled), num_hidden=num_classes, name="fc1")
    return sym.SoftmaxOutput(fc1, name="softmax")


def _records(path: Path) -> int:
    """How many records a RecordIO file holds (a bad file: a ClientError)."""
    from local_aws.ml import recordio

    try:
        with open(path, "rb") as stream:
            return sum(1 for _ in recordio.payloads(stream))
    except recordio.RecordIOError as error:
        raise ClientError(f"{path.name}: {error}") from None


def _joined(files: list[Path], work: Path, channel: str) -> Path:
    """One RecordIO file for the channel (ImageRecordIter reads one): the file, or the files concatenated."""
    if len(files) == 1:
        return files[0]
    joined = work / f"{channel}.rec"
    with open(joined, "wb") as out:
        for path in files:
            out.write(path.read_bytes())
    return joined


def _augmentation(kind: str) -> dict[str, Any]:
    """ImageRecordIter arguments of the recipe's augmentation levels (crop; + colour; + affine transform)."""
    options: dict[str, Any] = {}
    if kind.startswith("crop"):
        options |= {"rand_crop": True, "rand_mirror": True}
    if kind.startswith("crop_color"):
        options |= {"random_h": 36, "random_s": 50, "random_l": 50}
    if kind == "crop_color_transform":
        options |= {"max_rotate_angle": 10, "max_aspect_ratio": 0.25, "max_shear_ratio": 0.1}
    return options


def train(job: Path) -> None:
    """Train from the job folder's channels and hyperparameters; write the model directory."""
    config = job / "input" / "config"
    values = hyperparameters(json.loads((config / "hyperparameters.json").read_text()))
    channels = json.loads((config / "inputdataconfig.json").read_text())
    for channel in ("train", "validation"):
        if channel not in channels:
            raise ClientError(f"Channel {channel} is required with RecordIO input (channels given: {sorted(channels)})")
        content_type = channels[channel].get("ContentType", "application/x-recordio")
        if content_type != "application/x-recordio":
            raise ClientError(f"Channel {channel}: content type {content_type} is not supported by this local stand-in")
    files = {channel: record_files(job / "input" / "data" / channel) for channel in ("train", "validation")}
    for channel, found in files.items():
        if not found:
            raise ClientError(f"Channel {channel}: no .rec file in the channel's data")
    shape = image_shape(values["image_shape"])
    num_classes, batch = int(values["num_classes"]), int(values["mini_batch_size"])
    epochs, num_layers = int(values["epochs"]), int(values["num_layers"])
    network_plan(num_layers, shape[1])  # a ClientError before mxnet loads
    for channel, found in files.items():
        count = sum(_records(path) for path in found)
        if count < batch:  # MXNet's iterator cannot make one batch
            raise ClientError(f"Channel {channel}: {count} images, fewer than mini_batch_size ({batch})")

    mx: Any = importlib.import_module("mxnet")  # the ML environment's; not in the project's venv

    mx.random.seed(int(os.environ.get("PANOPIPE_SEED", "0")))
    work = job / "work"
    work.mkdir(exist_ok=True)
    threads = int(os.environ.get("SM_NUM_CPUS") or os.cpu_count() or 1)
    common: dict[str, Any] = {"data_shape": shape, "batch_size": batch, "preprocess_threads": threads, **NORMALIZE}
    if values["resize"]:
        common["resize"] = int(values["resize"])
    train_iter = mx.io.ImageRecordIter(
        path_imgrec=str(_joined(files["train"], work, "train")),
        shuffle=True,
        seed=int(os.environ.get("PANOPIPE_SEED", "0")),
        **common,
        **_augmentation(values["augmentation_type"]),
    )
    val_iter = mx.io.ImageRecordIter(path_imgrec=str(_joined(files["validation"], work, "validation")), **common)
    epoch_size = max(1, math.ceil(int(values["num_training_samples"]) / batch))
    steps = [int(step) * epoch_size for step in values["lr_scheduler_step"].split(",") if step.strip()]
    optimizer_params: dict[str, Any] = {
        "learning_rate": float(values["learning_rate"]),
        "wd": float(values["weight_decay"]),
    }
    optimizer = values["optimizer"]
    if optimizer in ("sgd", "nag"):
        optimizer_params["momentum"] = float(values["momentum"])
    elif optimizer == "adam":
        optimizer_params |= {
            "beta1": float(values["beta_1"]),
            "beta2": float(values["beta_2"]),
            "epsilon": float(values["eps"]),
        }
    elif optimizer == "rmsprop":
        optimizer_params |= {"gamma1": float(values["gamma"]), "epsilon": float(values["eps"])}
    else:
        raise ClientError(f"optimizer = {optimizer!r}: sgd, adam, rmsprop or nag")
    if steps:
        optimizer_params["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
            step=steps, factor=float(values["lr_scheduler_factor"])
        )
    metrics: list[Any] = [mx.metric.Accuracy()]
    if values["top_k"] and int(values["top_k"]) > 1:
        metrics.append(mx.metric.TopKAccuracy(top_k=int(values["top_k"])))
    net = symbol(mx, num_classes, num_layers, shape)
    module = mx.mod.Module(net, context=mx.cpu())
    LOG.info("training a %d-layer ResNet on %s images for %d epochs (mini batch %d)", num_layers, shape, epochs, batch)
    module.fit(
        train_iter,
        eval_data=val_iter,
        eval_metric=mx.metric.CompositeEvalMetric(metrics) if len(metrics) > 1 else metrics[0],
        optimizer=optimizer,
        optimizer_params=optimizer_params,
        initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
        num_epoch=epochs,
        batch_end_callback=mx.callback.Speedometer(batch, max(1, epoch_size // 2)),
    )
    model_dir = job / "model"
    model_dir.mkdir(exist_ok=True)
    module.save_checkpoint(str(model_dir / "image-classification"), 0)
    shapes = [{"shape": [1, *shape], "name": "data"}]
    (model_dir / "model-shapes.json").write_text(json.dumps(shapes))
    LOG.info("saved the model to %s", model_dir)


def main(argv: list[str] | None = None) -> int:
    """Train the job in the folder given as the only argument; write output/failure when it fails."""
    args = sys.argv[1:] if argv is None else argv
    job = Path(args[0] if args else os.environ.get("SM_JOB_ROOT", "/opt/ml"))
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format=f"[%(asctime)s %(levelname)s {os.getpid()}] %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        force=True,
    )
    started = time.monotonic()
    try:
        train(job)
    except ClientError as error:
        return _fail(job, f"ClientError: {error}")
    except Exception as error:  # the algorithm's own failure: SageMaker's AlgorithmError
        LOG.exception("training failed")
        return _fail(job, f"AlgorithmError: {type(error).__name__}: {error}")
    LOG.info("training took %.1f s", time.monotonic() - started)
    return 0


def _fail(job: Path, reason: str) -> int:
    LOG.error(reason)
    output = job / "output"
    output.mkdir(parents=True, exist_ok=True)
    (output / "failure").write_text(reason)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Example script-mode training entry point for the MXNet framework container: a small Gluon image classifier.

Point ``training.entry_point`` at this file (``mode: script``, ``framework: MXNET``). SageMaker's
MXNet container (and the local AWS, which runs it the same way) calls it with the job's
hyperparameters as ``--name value`` arguments and the container contract's variables:
``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` (the data), ``SM_MODEL_DIR`` (what becomes
``model.tar.gz``). The channels hold what the data preparation step writes: ``<class>/`` image
folders (``format: folders``), or RecordIO ``.rec`` files (labels are the records'). Images are used
at their size (the preparation step letterboxes them to the model's input) and normalized as the
project's application normalizes camera frames for a script's model (``model.input_scaling``
imagenet, the default in script mode): ``(pixel / 255 - mean) / std`` with ImageNet's statistics,
RGB, NCHW.

It prints ``validation:accuracy=<value>`` after each epoch: the pipeline's default metric definition
for a script (``<metric name>=<number>``) reads the gate's metric from that line. The model is
exported as ``model-symbol.json`` and ``model-0000.params``, the MXNet checkpoint Neo compiles.

Hyperparameters: ``epochs`` (10), ``learning-rate`` / ``learning_rate`` (0.01), ``batch-size`` /
``mini_batch_size`` (32), ``classes`` (comma-joined class names in label order; default: the
folders' names, sorted), ``seed`` (0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import mxnet as mx  # type: ignore[import-not-found]
import numpy as np
from mxnet import autograd, gluon

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def arguments(argv: list[str]) -> argparse.Namespace:
    """The job's hyperparameters (unknown ones are ignored: the container passes all of them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", "--learning_rate", dest="learning_rate", type=float, default=0.01)
    parser.add_argument("--batch-size", "--mini_batch_size", dest="batch_size", type=int, default=32)
    parser.add_argument("--classes", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", ""))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION", ""))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    known, _ = parser.parse_known_args(argv)
    return known


def _normalized(image: Any) -> Any:
    """HWC uint8 RGB (mxnet NDArray) → CHW float32, normalized like the application's frames."""
    array = image.asnumpy().astype(np.float32).transpose(2, 0, 1) / 255.0
    return (array - MEAN) / STD


def load(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images N×3×H×W, labels N, class names) of a channel: RecordIO files, or class folders."""
    images: list[Any] = []
    labels: list[float] = []
    records = sorted(folder.rglob("*.rec"))
    if records:
        for path in records:
            reader = mx.recordio.MXRecordIO(str(path), "r")
            while (item := reader.read()) is not None:
                header, encoded = mx.recordio.unpack(item)
                images.append(_normalized(mx.image.imdecode(encoded)))
                labels.append(float(np.asarray(header.label, dtype=np.float32).reshape(-1)[0]))
            reader.close()
    else:
        classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
        for label, name in enumerate(classes):
            for path in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(_normalized(mx.image.imread(str(path))))
                    labels.append(float(label))
    if not images:
        raise SystemExit(f"no images in {folder} (expected .rec files or <class>/ folders of images)")
    return np.stack(images), np.asarray(labels, dtype=np.float32), classes


def network(num_classes: int) -> gluon.nn.HybridSequential:
    """Three conv-BN-ReLU blocks, global pooling, a dense classifier: small enough for CPUs."""
    net = gluon.nn.HybridSequential()
    for channels in (16, 32, 64):
        net.add(gluon.nn.Conv2D(channels, kernel_size=3, padding=1, use_bias=False))
        net.add(gluon.nn.BatchNorm(), gluon.nn.Activation("relu"), gluon.nn.MaxPool2D(pool_size=2, ceil_mode=True))
    net.add(gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(num_classes))
    return net


def accuracy(net: gluon.nn.HybridSequential, data: gluon.data.DataLoader) -> float:
    """The share of correct predictions."""
    metric = mx.metric.Accuracy()
    for batch, label in data:
        metric.update([label], [net(batch)])
    return float(metric.get()[1])


def main(argv: list[str] | None = None) -> int:
    """Train, report per-epoch metrics, export the model."""
    args = arguments(sys.argv[1:] if argv is None else argv)
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    classes = [name for name in args.classes.split(",") if name]
    train_x, train_y, classes = load(Path(args.train), classes)
    val_x, val_y, _ = load(Path(args.validation), classes)
    num_classes = max(len(classes), int(max(train_y.max(), val_y.max())) + 1)
    print(
        f"{len(train_y)} training, {len(val_y)} validation images of shape {train_x.shape[1:]}; {num_classes} classes"
    )
    train = gluon.data.DataLoader(gluon.data.ArrayDataset(train_x, train_y), args.batch_size, shuffle=True)
    validation = gluon.data.DataLoader(gluon.data.ArrayDataset(val_x, val_y), args.batch_size)
    net = network(num_classes)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": args.learning_rate})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for epoch in range(args.epochs):
        started, total = time.monotonic(), 0.0
        for batch, label in train:
            with autograd.record():
                loss = loss_fn(net(batch), label)
            loss.backward()
            trainer.step(batch.shape[0])
            total += float(loss.sum().asscalar())
        print(
            f"epoch {epoch} train:loss={total / len(train_y):.4f} train:accuracy={accuracy(net, train):.4f} "
            f"validation:accuracy={accuracy(net, validation):.4f} ({time.monotonic() - started:.1f} s)",
            flush=True,
        )
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    net.export(str(model_dir / "model"), epoch=0)
    print(f"exported {model_dir / 'model'}-symbol.json and -0000.params")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The phases bench_frozen.py times: pretraining a backbone, the tool's stage 1, the naive way.

Each phase builds its config from bench_frozen.py's arguments (the same subset, split, head,
optimizer and epoch count for all), runs inside an RssMonitor, and returns its numbers as a
dict. TensorFlow, Keras and fmnist_tl are imported inside the functions, as in bench_frozen.py,
so that `--help` stays fast and the RSS after bench_frozen.py's own imports is a baseline.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

from phase_memory import MB, RssMonitor

# The pretraining recipe. freeze_backbone=null: with weights none the backbone trains whole,
# from scratch, with one fixed recipe whatever the config's stage 1 is (a warmup over one
# epoch would leave a one-epoch pretraining barely trained).
PRETRAIN_RECIPE = [
    "train.optimizer=adam",
    "train.learning_rate=0.001",
    "train.schedule=constant",
    "train.warmup_epochs=0",
    "train.weight_decay=0",
    "train.label_smoothing=0",
    "train.batch_size=64",
]


def overrides(
    args: argparse.Namespace,
    work: Path,
    weights: str,
    name: str,
    *,
    epochs: int | None = None,
    frozen: bool = True,
    extra: list[str] | None = None,
) -> list[str]:
    """--set items for the config: the subset, weights, a frozen stage 1 without early stop."""
    sets = [
        *args.sets,
        *(extra or []),
        f"seed={args.seed}",
        f"data.val_split={args.val_split}",
        f"model.weights={weights}",
        f"model.freeze_backbone={'true' if frozen else 'null'}",
        "train.patience=null",
        "train.feature_cache=auto",
        "finetune.epochs=0",
        f"output.dir={work / 'runs'}",
        f"output.log_dir={work / 'logs'}",
        f"output.cache_dir={work / 'feature_cache'}",
        f"output.name={name}",
        "output.update_best=false",
        f"runtime.verbose={'epoch' if args.verbose else 'silent'}",
    ]
    if epochs or args.epochs:
        sets.append(f"train.epochs={epochs or args.epochs}")
    if args.size:
        sets.append(f"model.input_size={args.size}")
    if args.data_dir:
        sets.append(f"data.dir={args.data_dir}")
    if args.train_limit:
        sets.append(f"data.train_limit={args.train_limit}")
    if args.test_limit:
        sets.append(f"data.test_limit={args.test_limit}")
    return sets


def bench_config(args: argparse.Namespace, work: Path, weights: str, name: str, **kw: Any) -> Any:
    from fmnist_tl.config import load_config

    return load_config(args.config, overrides(args, work, weights, name, **kw))


def fresh_session() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


# --------------------------------------------------------------------------------------------
# Pretraining (--pretrain-weights-epochs)


def pretrain_backbone(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, Any]]:
    """Train the backbone from scratch on the subset, recalibrate BN, save it as .weights.h5.

    BatchNorm in keras.applications uses momentum 0.999, so after a few hundred steps its
    moving statistics are still mostly their initial values and a frozen (inference-mode)
    backbone would output garbage. Re-estimating them as the plain average of batch
    statistics over a few thousand training images fixes that without touching any kernel.
    """
    import keras

    from fmnist_tl.training.splits import prepare_data
    from fmnist_tl.training.trainer import train

    config = bench_config(
        args,
        work,
        "none",
        "bench-pretrain",
        epochs=args.pretrain_weights_epochs,
        frozen=False,
        extra=PRETRAIN_RECIPE,
    )
    t0 = time.perf_counter()
    result = train(config)
    model = keras.models.load_model(result.model_path, compile=False)
    splits = prepare_data(config)
    x = splits.x_train[: args.bn_calibration_images]
    path = work / "pretrained_backbone.weights.h5"
    recalibrate_and_save(model, x, config.train.batch_size, path)

    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, acc_after = model.evaluate(splits.x_test.astype("float32"), splits.y_test, verbose=0)
    info = {
        "epochs": args.pretrain_weights_epochs,
        "weights_file": str(path),
        "seconds": round(time.perf_counter() - t0, 1),
        "test_accuracy_before_bn_recalibration": result.metrics.test.accuracy,
        "test_accuracy_after_bn_recalibration": round(float(acc_after), 4),
        "bn_calibration_images": len(x),
    }
    del model
    fresh_session()
    return str(path), info


def recalibrate_and_save(model: Any, x: Any, batch: int, path: Path) -> None:
    """Set the backbone's BatchNorm moving statistics to the mean over batches of `x`, then
    save the backbone's weights to `path`."""
    import keras
    import numpy as np

    preprocess, backbone = model.get_layer("preprocess"), model.get_layer("backbone")
    backbone.trainable = True  # BN updates its moving statistics only when trainable
    bns = [la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization)]
    for i, start in enumerate(range(0, len(x), batch), start=1):
        for bn in bns:  # moving = moving*(i-1)/i + batch/i: the mean over batches so far
            bn.momentum = (i - 1) / i
        pixels = preprocess(np.asarray(x[start : start + batch], np.float32))
        backbone(pixels, training=True)
    for bn in bns:
        bn.momentum = 0.999
    backbone.save_weights(str(path))


# --------------------------------------------------------------------------------------------
# The tool


def run_tool(args: argparse.Namespace, work: Path, weights: str, name: str) -> dict[str, Any]:
    from fmnist_tl.training.trainer import train

    config = bench_config(args, work, weights, name)
    with RssMonitor() as mem:
        t0 = time.perf_counter()
        result = train(config)
        wall = time.perf_counter() - t0
    m = result.metrics.to_dict()
    stage = m["stages"][0]
    n_train = m["data"]["train"]
    out = {
        "wall_s": round(wall, 2),
        "images_per_s": round(n_train * config.train.epochs / wall, 1),
        **mem.summary(),
        "test_accuracy": m["test"]["accuracy"],
        "epochs_run": stage["epochs_run"],
        "feature_cache": stage.get("feature_cache"),
        "feature_seconds": stage.get("feature_seconds"),
        "feature_pass": stage.get("feature_pass"),  # runtime.frozen_pass: keras or xnnpack
        "test_pass": m.get("test_pass"),
        "stage1_seconds": stage.get("wall_time_s"),
        "weights_used": m["weights_used"],
        "n_train": n_train,
        "n_val": m["data"]["val"],
        "n_test": m["data"]["test"],
        "memory_method": mem.method,
    }
    fresh_session()
    return out


# --------------------------------------------------------------------------------------------
# The naive way


def run_naive(args: argparse.Namespace, work: Path, weights: str) -> dict[str, Any]:
    import keras

    from fmnist_tl.training.splits import prepare_data

    config = bench_config(args, work, weights, "bench-naive")
    t = config.train
    resize_all, labels = resizer(config), labeller(config)
    with RssMonitor() as mem:
        t0 = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        s = prepare_data(config)  # the same subset and split as the tool
        x_train, x_val, x_test = resize_all(s.x_train), resize_all(s.x_val), resize_all(s.x_test)
        t_resized = time.perf_counter()

        model, base = naive_model(config, weights, len(x_train))
        best = best_weights(t.monitor)
        t_fit = time.perf_counter()
        history = model.fit(
            x_train,
            labels(s.y_train),
            batch_size=t.batch_size,
            epochs=t.epochs,
            validation_data=(x_val, labels(s.y_val)) if len(x_val) else None,
            callbacks=[best],
            verbose=2 if args.verbose else 0,
        )
        fit_s = time.perf_counter() - t_fit
        y_test = labels(s.y_test)
        _, acc_last = model.evaluate(x_test, y_test, batch_size=t.batch_size, verbose=0)
        wall = time.perf_counter() - t0
    acc_best = acc_last
    if best.weights is not None:  # outside the timing: the notebooks do not do this
        model.set_weights(best.weights)
        _, acc_best = model.evaluate(x_test, y_test, batch_size=t.batch_size, verbose=0)
    resized_bytes = x_train.nbytes + x_val.nbytes + x_test.nbytes
    out = {
        "wall_s": round(wall, 2),
        "images_per_s": round(len(x_train) * t.epochs / wall, 1),
        **mem.summary(),
        "test_accuracy": round(float(acc_best), 4),
        "test_accuracy_last_epoch": round(float(acc_last), 4),
        "epochs_run": len(history.history["loss"]),
        "resize_seconds": round(t_resized - t0, 2),
        "fit_seconds": round(fit_s, 2),
        "resized_arrays_mb": round(resized_bytes / MB, 1),
        "n_train": len(x_train),
        "memory_method": mem.method,
    }
    del model, base, x_train, x_val, x_test
    fresh_session()
    return out


def resizer(config: Any) -> Any:
    """The notebooks' way: the whole array at once, float32, size x size x 3 in memory."""
    import tensorflow as tf
    from keras.applications.mobilenet_v2 import preprocess_input

    m = config.model
    size = m.input_size

    def resize_all(x: Any) -> Any:
        x = tf.image.resize(tf.cast(x, tf.float32), (size, size), method=m.resize_method)
        x = tf.image.grayscale_to_rgb(x)
        return preprocess_input(x.numpy())

    return resize_all


def labeller(config: Any) -> Any:
    """The targets for the config's loss: label smoothing needs one-hot ones, as in the tool."""
    import keras

    smoothing = config.train.label_smoothing

    def labels(y: Any) -> Any:
        return keras.utils.to_categorical(y, 10) if smoothing > 0 else y

    return labels


def best_weights(monitor: str) -> Any:
    """A callback that keeps the weights of the best epoch by train.monitor: the tool's
    checkpoint rule."""
    import keras

    better = (lambda a, b: a > b) if "accuracy" in monitor else (lambda a, b: a < b)

    class BestWeights(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.weights = None, None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is not None and (self.best is None or better(value, self.best)):
                self.best, self.weights = value, self.model.get_weights()

    return BestWeights()


def naive_model(config: Any, weights: str, n_train: int) -> tuple[Any, Any]:
    """A frozen MobileNetV2 (trainable=False, called with training=False) + the config's
    pooling and head, compiled with the tool's optimizer, schedule and loss for stage 1
    (AdamW, cosine, smoothing, ...). Returns the model and its backbone."""
    import keras

    from fmnist_tl.training.optim import compile_model, steps_per_epoch

    m, t = config.model, config.train
    size = m.input_size
    base = keras.applications.MobileNetV2(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(size, size, 3),
    )
    if weights not in ("none", "imagenet"):
        base.load_weights(weights)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = base(inputs, training=False)
    pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
    x = pool.get(m.head.pooling, keras.layers.Flatten)()(x)
    if m.head.units:
        x = keras.layers.Dense(m.head.units, activation="relu")(x)
    if m.head.dropout:
        x = keras.layers.Dropout(m.head.dropout)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    compile_model(model, config, "head", steps_per_epoch(n_train, t.batch_size))
    return model, base

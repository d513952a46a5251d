#!/usr/bin/env python
"""Frozen-backbone stage 1: the seed notebooks' naive way against fmnist-tl's feature cache.

In ONE process, on the same data subset, split, head, optimizer and epoch count, all taken
from stage 1 of a config (configs/mobilenet.yaml unless --config says otherwise):

  tool (cold)  fmnist_tl.training.trainer.train(config) with a fresh, empty feature cache:
               one backbone pass over the data, then E epochs of the head on the cached
               pooled features
  tool (warm)  the same config again: the features come from the cache
  naive        what the seed notebooks do: resize the whole arrays up front (tf.image.resize
               to size x size x 3 float32, keras.applications preprocess_input), then a frozen
               backbone (trainable=False, called with training=False) + the config's pooling
               and head, compiled with the config's optimizer, schedule and loss, and
               model.fit for E epochs: the backbone runs over every image every epoch

Early stopping is off in both, so both run E epochs. Timings include loading the data (both
call fmnist_tl.training.splits.prepare_data) and the test evaluation. The tool's timing also
includes what the naive way does not do: checkpoints, TensorBoard logs, evaluation reports and
plots.

Memory: per phase, the resident-set high-water mark is reset (`echo 5 > /proc/self/clear_refs`
resets VmHWM) and a thread samples VmRSS every 10 ms; the phase's peak is the larger of the two,
reported as growth over the RSS at the phase's start. ru_maxrss cannot be used per phase (it
never goes down). Without clear_refs only the sampler counts. The naive phase runs last: memory
freed by earlier phases stays in the allocator and is reused, which can only make a later
phase's growth look smaller, so the naive number is a lower bound.

Accuracy: the tool evaluates the checkpoint with the best train.monitor value. The naive row
reports the last epoch's test accuracy (what a notebook prints) and the best epoch's by the
same rule; the match check uses the latter. With `--weights none` a frozen random
MobileNetV2 outputs vanishing features (DESIGN.md) and both sit at chance; use
`--pretrain-weights-epochs K` (train a MobileNetV2 from scratch on the subset, recalibrate its
BatchNorm statistics, save the backbone) or `--weights PATH` for a meaningful comparison.

Example (the tiny validation run; the real benchmark drops --size and --epochs):
  .venv/bin/python scripts/bench_frozen.py --train-limit 1000 --test-limit 500 --epochs 2 \
      --size 32 --pretrain-weights-epochs 2 --out /tmp/bench.json
Other settings: --set KEY=VALUE as for `fmnist train` (e.g. --set model.head.units=480).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Resident memory per phase (also imported by peak_memory.py; keep TensorFlow out of here)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is None:  # not Linux: fall back on the (monotonic) high-water mark
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kb * 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


class RssMonitor:
    """Peak resident memory of the code inside `with`: VmHWM reset + a 10 ms VmRSS sampler.

    Also the CPU seconds it used: the work done, which, unlike wall time, does not depend on
    how many cores the VM hands out at the moment.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self.cpu_s = 0.0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssMonitor:
        gc.collect()
        self.hwm_reset = reset_hwm()
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.cpu_s = cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = cpu_seconds() - self.cpu_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        hwm = _status_kb("VmHWM")
        if self.hwm_reset and hwm is not None:
            self.peak = max(self.peak, hwm * 1024)

    @property
    def method(self) -> str:
        return "VmHWM reset + 10 ms VmRSS sampler" if self.hwm_reset else "10 ms VmRSS sampler"

    def summary(self) -> dict[str, Any]:
        return {
            "rss_start_mb": round(self.start / MB, 1),
            "rss_peak_mb": round(self.peak / MB, 1),
            "peak_growth_mb": round((self.peak - self.start) / MB, 1),
            "cpu_s": round(self.cpu_s, 1),
        }


# --------------------------------------------------------------------------------------------
# The phases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        default=str(REPO / "configs" / "mobilenet.yaml"),
        help="whose stage 1 to run [default: configs/mobilenet.yaml]",
    )
    p.add_argument("--train-limit", type=int, default=None, help="first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images")
    p.add_argument("--val-split", type=float, default=0.1, help="share of train for validation")
    p.add_argument("--epochs", type=int, default=None, help="[default: the config's]")
    p.add_argument("--size", type=int, default=None, help="input size [default: the config's]")
    p.add_argument("--weights", default="none", help="none | imagenet | PATH (.weights.h5)")
    p.add_argument(
        "--pretrain-weights-epochs",
        type=int,
        default=0,
        metavar="K",
        help="first train the backbone from scratch for K epochs on the subset and use it",
    )
    p.add_argument(
        "--bn-calibration-images",
        type=int,
        default=2048,
        help="images used to re-estimate BatchNorm statistics after pretraining",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="sets",
        help="config override for both paths, as in `fmnist train --set` (repeatable)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder [default: search]")
    p.add_argument("--skip-naive", action="store_true", help="only the tool's path")
    p.add_argument("--verbose", action="store_true", help="one line per epoch")
    p.add_argument("--out", default="results.json", help="where to write the JSON results")
    args = p.parse_args(argv)
    if args.pretrain_weights_epochs and args.weights != "none":
        p.error("--pretrain-weights-epochs makes the weights; leave --weights at none")
    if args.weights not in ("none", "imagenet") and not Path(args.weights).is_file():
        p.error(f"--weights: {args.weights} is not a file")
    return args


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


def pretrain_backbone(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, Any]]:
    """Train the backbone from scratch on the subset, recalibrate BN, save it as .weights.h5.

    BatchNorm in keras.applications uses momentum 0.999, so after a few hundred steps its
    moving statistics are still mostly their initial values and a frozen (inference-mode)
    backbone would output garbage. Re-estimating them as the plain average of batch
    statistics over a few thousand training images fixes that without touching any kernel.
    """
    import keras
    import numpy as np

    from fmnist_tl.training.splits import prepare_data
    from fmnist_tl.training.trainer import train

    # freeze_backbone=null: with weights none the backbone trains whole, from scratch, with
    # one fixed recipe whatever the config's stage 1 is (a warmup over one epoch would leave
    # a one-epoch pretraining barely trained).
    recipe = [
        "train.optimizer=adam",
        "train.learning_rate=0.001",
        "train.schedule=constant",
        "train.warmup_epochs=0",
        "train.weight_decay=0",
        "train.label_smoothing=0",
        "train.batch_size=64",
    ]
    config = bench_config(
        args,
        work,
        "none",
        "bench-pretrain",
        epochs=args.pretrain_weights_epochs,
        frozen=False,
        extra=recipe,
    )
    batch = config.train.batch_size
    t0 = time.perf_counter()
    result = train(config)
    model = keras.models.load_model(result.model_path, compile=False)
    preprocess, backbone = model.get_layer("preprocess"), model.get_layer("backbone")
    backbone.trainable = True  # BN updates its moving statistics only when trainable
    bns = [la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization)]
    splits = prepare_data(config)
    x = splits.x_train[: args.bn_calibration_images]
    for i, start in enumerate(range(0, len(x), batch), start=1):
        for bn in bns:  # moving = moving*(i-1)/i + batch/i: the mean over batches so far
            bn.momentum = (i - 1) / i
        pixels = preprocess(np.asarray(x[start : start + batch], np.float32))
        backbone(pixels, training=True)
    for bn in bns:
        bn.momentum = 0.999
    path = work / "pretrained_backbone.weights.h5"
    backbone.save_weights(str(path))

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
    del model, preprocess, backbone
    fresh_session()
    return str(path), info


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
        "stage1_seconds": stage.get("wall_time_s"),
        "weights_used": m["weights_used"],
        "n_train": n_train,
        "n_val": m["data"]["val"],
        "n_test": m["data"]["test"],
        "memory_method": mem.method,
    }
    fresh_session()
    return out


def run_naive(args: argparse.Namespace, work: Path, weights: str) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf
    from keras.applications.mobilenet_v2 import preprocess_input

    from fmnist_tl.training.optim import compile_model, steps_per_epoch
    from fmnist_tl.training.splits import prepare_data

    config = bench_config(args, work, weights, "bench-naive")
    m, t = config.model, config.train
    size = m.input_size
    monitor = t.monitor
    better = (lambda a, b: a > b) if "accuracy" in monitor else (lambda a, b: a < b)

    def resize_all(x: np.ndarray) -> np.ndarray:
        # The notebooks' way: the whole array at once, float32, size x size x 3 in memory.
        x = tf.image.resize(tf.cast(x, tf.float32), (size, size), method=m.resize_method)
        x = tf.image.grayscale_to_rgb(x)
        return preprocess_input(x.numpy())

    def labels(y: np.ndarray) -> np.ndarray:
        # The config's loss: label smoothing needs one-hot targets, as in the tool.
        return keras.utils.to_categorical(y, 10) if t.label_smoothing > 0 else y

    class BestWeights(keras.callbacks.Callback):
        """The weights of the best epoch by train.monitor: the tool's checkpoint rule."""

        def __init__(self) -> None:
            super().__init__()
            self.best, self.weights = None, None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is not None and (self.best is None or better(value, self.best)):
                self.best, self.weights = value, self.model.get_weights()

    with RssMonitor() as mem:
        t0 = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        s = prepare_data(config)  # the same subset and split as the tool
        x_train, x_val, x_test = resize_all(s.x_train), resize_all(s.x_val), resize_all(s.x_test)
        t_resized = time.perf_counter()

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
        # The tool's optimizer, schedule and loss for stage 1 (AdamW, cosine, smoothing, ...).
        compile_model(model, config, "head", steps_per_epoch(len(x_train), t.batch_size))
        best = BestWeights()
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


# --------------------------------------------------------------------------------------------
# Report


def preflight(args: argparse.Namespace, size: int) -> str:
    """What the naive way will hold in memory, against what the machine has free now."""
    n = (args.train_limit or 60000) + (args.test_limit or 10000)
    need = n * size * size * 3 * 4
    avail_kb = None
    try:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        pass
    line = f"naive resized arrays: {need / MB:,.0f} MB for {n} images at {size}x{size}x3"
    if avail_kb is not None:
        line += f" (MemAvailable now {avail_kb / 1024:,.0f} MB)"
        if not args.skip_naive and need * 2 > avail_kb * 1024:
            line += "\nWARNING: the naive phase may not fit (arrays plus copies); --skip-naive?"
    return line


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'path':<12}{'wall s':>9}{'cpu s':>9}{'img/s':>10}{'peak +MB':>10}{'test acc':>10}  notes"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if name.startswith("tool"):
            note = f"cache {r['feature_cache']}, features {r['feature_seconds']} s"
        else:
            note = (
                f"resize {r['resize_seconds']} s, fit {r['fit_seconds']} s, "
                f"arrays {r['resized_arrays_mb']} MB, "
                f"last-epoch acc {r['test_accuracy_last_epoch']}"
            )
        lines.append(
            f"{name:<12}{r['wall_s']:>9.2f}{r['cpu_s']:>9.1f}{r['images_per_s']:>10.1f}"
            f"{r['peak_growth_mb']:>10.1f}{r['test_accuracy']:>10.4f}  {note}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from fmnist_tl import runtime
    from fmnist_tl.errors import FmnistError

    report: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "tf_threads": {
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            },
            "versions": runtime.versions(),
        },
        "rss_after_imports_mb": round(rss_bytes() / MB, 1),
    }
    try:  # the config, checked before any work
        config = bench_config(args, Path("."), "none", "bench-check")
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if config.model.backbone != "mobilenet_v2":
        print(
            f"error: {args.config}: the naive path is MobileNetV2's; this config's backbone is "
            f"{config.model.backbone!r}",
            file=sys.stderr,
        )
        return 2
    report["stage1"] = {
        "config": args.config,
        "input_size": config.model.input_size,
        "resize_method": config.model.resize_method,
        "head": config.model.head.model_dump(),
        "train": config.train.model_dump(),
    }
    print(preflight(args, config.model.input_size))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_frozen_") as tmp:
        work = Path(tmp)
        try:
            weights = args.weights
            if args.pretrain_weights_epochs:
                print(f"pretraining the backbone for {args.pretrain_weights_epochs} epochs ...")
                weights, report["pretrain"] = pretrain_backbone(args, work)
                print(f"  {report['pretrain']}")
            print("tool, cold feature cache ...")
            results["tool_cold"] = run_tool(args, work, weights, "bench-cold")
            print("tool, warm feature cache ...")
            results["tool_warm"] = run_tool(args, work, weights, "bench-warm")
            if not args.skip_naive:
                print("naive (resize everything up front, backbone every epoch) ...")
                results["naive"] = run_naive(args, work, weights)
        except FmnistError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    report["weights_used"] = results["tool_cold"]["weights_used"]
    report["results"] = results
    print()
    print(table(results))
    if "naive" in results:
        naive = results["naive"]
        report["speedup"] = {
            f"naive_over_{k}": round(naive["wall_s"] / results[k]["wall_s"], 2)
            for k in ("tool_cold", "tool_warm")
        }
        # Stage 1 alone, from the loaded arrays to a trained head: the naive way's resize + fit
        # against the tool's feature extraction + head epochs (no test, checkpoints or plots).
        naive_stage1 = naive["resize_seconds"] + naive["fit_seconds"]
        report["speedup"].update(
            {
                f"stage1_naive_over_{k}": round(naive_stage1 / results[k]["stage1_seconds"], 2)
                for k in ("tool_cold", "tool_warm")
            }
        )
        report["speedup"].update(
            {
                f"cpu_naive_over_{k}": round(naive["cpu_s"] / max(results[k]["cpu_s"], 1e-9), 2)
                for k in ("tool_cold", "tool_warm")
            }
        )
        diff = 100 * (results["tool_cold"]["test_accuracy"] - naive["test_accuracy"])
        report["accuracy_diff_points"] = round(diff, 2)
        report["accuracy_match_within_0_5"] = abs(diff) <= 0.5
        s = report["speedup"]
        print(
            f"\nspeed-up (naive wall / tool wall): cold cache {s['naive_over_tool_cold']}x, "
            f"warm cache {s['naive_over_tool_warm']}x"
        )
        print(
            f"stage 1 only (naive resize + fit / tool features + head): cold cache "
            f"{s['stage1_naive_over_tool_cold']}x, warm cache {s['stage1_naive_over_tool_warm']}x"
        )
        print(
            f"CPU seconds, whole run (work done, whatever cores the VM gave): cold cache "
            f"{s['cpu_naive_over_tool_cold']}x, warm cache {s['cpu_naive_over_tool_warm']}x"
        )
        print(
            f"test accuracy tool - naive (best epoch by train.monitor): {diff:+.2f} points "
            f"({'within' if abs(diff) <= 0.5 else 'NOT within'} 0.5)"
        )
    if report["weights_used"].startswith("none"):
        print("note: random frozen weights; accuracies are at chance and say nothing.")
    print(f"memory: {results['tool_cold']['memory_method']}; keras {keras.__version__}")
    from fmnist_tl import atomic

    atomic.write_json(args.out, report)  # a killed benchmark never leaves half a report
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

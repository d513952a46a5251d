#!/usr/bin/env python
"""Peak resident memory of fmnist-tl's streaming path (no feature cache) at 224x224.

Runs fmnist_tl.training.trainer.train on a ResNet50 (default) at 224x224 with
`train.feature_cache=off`, so every batch of uint8 28x28 images is resized inside the model, and
one epoch (`train.epochs=1`) over `--train-limit` images (minus the validation split): `--steps`
lowers the limit so that the epoch is at most that many training steps. Prints the RSS after the
imports (the baseline) and the peak RSS of the run, measured with a VmHWM reset plus a 10 ms
VmRSS sampler (see phase_memory.py), next to what the naive way would hold: the resized float32
arrays alone.

The stage is frozen by default (`model.freeze_backbone=true`): that is the stage the feature
cache replaces, so it is the one whose streaming memory matters. `--no-freeze` trains the whole
backbone instead (backprop keeps every activation: far more memory, and slow on a CPU).

Validate tiny: .venv/bin/python scripts/peak_memory.py --train-limit 256 --size 64
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from phase_memory import MB, RssMonitor, rss_bytes  # noqa: E402

SEED = 42  # fixes the validation split, so --steps can size the limit exactly


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-limit", type=int, default=256, help="first N training images")
    p.add_argument("--steps", type=int, default=None, help="at most this many training steps")
    p.add_argument("--test-limit", type=int, default=64, help="test images evaluated at the end")
    # Not 0 by default: a run without validation currently crashes in report.plot_history.
    p.add_argument("--val-split", type=float, default=0.1, help="share of train for validation")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--backbone", default="resnet50", choices=["resnet50", "vgg16", "mobilenet_v2"])
    p.add_argument("--weights", default="none", help="none | imagenet | PATH")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="frozen backbone, as in stage 1 (default); --no-freeze trains it whole",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def limit_for_steps(args: argparse.Namespace, n: int) -> int:
    """The largest train_limit <= n whose training part fills at most `steps` batches."""
    from fmnist_tl.data import sources

    y = sources.load_fashion_mnist(args.data_dir).y_train
    n = min(n, math.ceil(args.steps * args.batch_size / max(1 - args.val_split, 1e-9)) + 10)
    while n > 1:
        (_, y_train), _ = sources.split_train_val(y[:n], y[:n], args.val_split, SEED)
        if math.ceil(len(y_train) / args.batch_size) <= args.steps:
            return n
        n -= 1
    return n


def overrides(args: argparse.Namespace, n: int, work: Path) -> list[str]:
    """--set items: one epoch of a streaming stage 1 over the first `n` images."""
    sets = [
        f"seed={SEED}",
        f"data.train_limit={n}",
        f"data.test_limit={args.test_limit}",
        f"data.val_split={args.val_split}",
        f"model.backbone={args.backbone}",
        f"model.weights={args.weights}",
        f"model.input_size={args.size}",
        f"model.freeze_backbone={'true' if args.freeze else 'false'}",
        "train.epochs=1",
        f"train.batch_size={args.batch_size}",
        "train.patience=null",
        "train.feature_cache=off",
        "finetune.epochs=0",
        f"output.dir={work / 'runs'}",
        f"output.log_dir={work / 'logs'}",
        f"output.cache_dir={work / 'cache'}",
        "output.name=peak-memory",
        "output.update_best=false",
        "runtime.verbose=silent",
    ]
    if args.data_dir:
        sets.append(f"data.dir={args.data_dir}")
    return sets


def build_report(
    args: argparse.Namespace, m: dict[str, Any], mem: RssMonitor, baseline: int, wall: float
) -> dict[str, Any]:
    """The run's numbers (`m`: its metrics) next to what the naive resized arrays would hold."""
    n_train = m["data"]["train"]
    stage = m["stages"][0]
    naive = n_train * args.size * args.size * 3 * 4
    naive_full = 60000 * args.size * args.size * 3 * 4
    return {
        "backbone": args.backbone,
        "input_size": args.size,
        "frozen": args.freeze,
        "weights_used": m["weights_used"],
        "feature_cache": stage.get("feature_cache", "off"),
        "train_images": n_train,
        "val_images": m["data"]["val"],
        "test_images": m["data"]["test"],
        "batch_size": args.batch_size,
        "steps": math.ceil(n_train / args.batch_size),
        "wall_s": round(wall, 1),
        "stage1_images_per_s": stage.get("images_per_s"),
        "rss_baseline_after_imports_mb": round(baseline / MB, 1),
        "rss_at_train_start_mb": round(mem.start / MB, 1),
        "rss_peak_mb": round(mem.peak / MB, 1),
        "peak_growth_over_baseline_mb": round((mem.peak - baseline) / MB, 1),
        "naive_resized_train_array_mb": round(naive / MB, 1),
        "naive_resized_60k_mb": round(naive_full / MB, 1),
        "memory_method": mem.method,
    }


def print_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(
        f"{args.backbone} {args.size}x{args.size}, {'frozen' if args.freeze else 'trainable'}, "
        f"streaming (feature cache off): {report['train_images']} images, "
        f"{report['steps']} steps of {args.batch_size}, {report['wall_s']:.1f} s"
    )
    print(f"baseline RSS after imports: {report['rss_baseline_after_imports_mb']:,.1f} MB")
    print(f"peak RSS during the run:    {report['rss_peak_mb']:,.1f} MB")
    print(f"peak growth over baseline:  {report['peak_growth_over_baseline_mb']:,.1f} MB")
    print(
        f"naive resized arrays would be {report['naive_resized_train_array_mb']:,.1f} MB for "
        f"these images, {report['naive_resized_60k_mb']:,.1f} MB for all 60,000"
    )
    print(f"({report['memory_method']})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras  # noqa: F401  (imported before the baseline: it is part of it)
    import tensorflow as tf  # noqa: F401

    from fmnist_tl.config import load_config
    from fmnist_tl.errors import FmnistError
    from fmnist_tl.training.trainer import train

    baseline = rss_bytes()
    n = args.train_limit
    if args.steps is not None:
        n = limit_for_steps(args, n)
    with tempfile.TemporaryDirectory(prefix="peak_memory_") as tmp:
        try:
            config = load_config(None, overrides(args, n, Path(tmp)))
            with RssMonitor() as mem:
                t0 = time.perf_counter()
                result = train(config)
                wall = time.perf_counter() - t0
        except FmnistError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    report = build_report(args, result.metrics.to_dict(), mem, baseline, wall)
    print_report(args, report)
    if args.json:
        from fmnist_tl import atomic

        atomic.write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
MobileNetV2 outputs vanishing features (docs/design.md) and both sit at chance; use
`--pretrain-weights-epochs K` (train a MobileNetV2 from scratch on the subset, recalibrate its
BatchNorm statistics, save the backbone) or `--weights PATH` for a meaningful comparison.

Example (the tiny validation run; the real benchmark drops --size and --epochs):
  .venv/bin/python scripts/bench_frozen.py --train-limit 1000 --test-limit 500 --epochs 2 \
      --size 32 --pretrain-weights-epochs 2 --out /tmp/bench.json
Other settings: --set KEY=VALUE as for `fmnist train` (e.g. --set model.head.units=480).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The phases live in frozen_phases.py, the memory measurement in phase_memory.py.
from frozen_phases import bench_config, pretrain_backbone, run_naive, run_tool  # noqa: E402
from phase_memory import MB, rss_bytes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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
    p.add_argument(
        "--naive-only",
        action="store_true",
        help="only the naive way (bench_stage1.py --naive runs it as its own process)",
    )
    p.add_argument("--verbose", action="store_true", help="one line per epoch")
    p.add_argument("--out", default="results.json", help="where to write the JSON results")
    args = p.parse_args(argv)
    if args.skip_naive and args.naive_only:
        p.error("--skip-naive and --naive-only leave nothing to run")
    if args.pretrain_weights_epochs and args.weights != "none":
        p.error("--pretrain-weights-epochs makes the weights; leave --weights at none")
    if args.weights not in ("none", "imagenet") and not Path(args.weights).is_file():
        p.error(f"--weights: {args.weights} is not a file")
    return args


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
            note = (
                f"cache {r['feature_cache']}, features {r['feature_seconds']} s "
                f"by {r.get('feature_pass')}"
            )
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


def first_report(args: argparse.Namespace) -> dict[str, Any]:
    """The settings and the machine, with the RSS once TensorFlow and fmnist_tl are loaded."""
    import tensorflow as tf

    from fmnist_tl.machine import versions

    return {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "tf_threads": {
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            },
            "versions": versions(),
        },
        "rss_after_imports_mb": round(rss_bytes() / MB, 1),
    }


def stage1_settings(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    return {
        "config": args.config,
        "input_size": config.model.input_size,
        "resize_method": config.model.resize_method,
        "head": config.model.head.model_dump(),
        "train": config.train.model_dump(),
    }


def run_phases(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pretraining (if asked), the tool cold and warm, then the naive way (if not skipped),
    all in one temporary folder. The pretraining's numbers go into `report`."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_frozen_") as tmp:
        work = Path(tmp)
        weights = args.weights
        if args.pretrain_weights_epochs:
            print(f"pretraining the backbone for {args.pretrain_weights_epochs} epochs ...")
            weights, report["pretrain"] = pretrain_backbone(args, work)
            print(f"  {report['pretrain']}")
        if not args.naive_only:
            print("tool, cold feature cache ...")
            results["tool_cold"] = run_tool(args, work, weights, "bench-cold")
            print("tool, warm feature cache ...")
            results["tool_warm"] = run_tool(args, work, weights, "bench-warm")
        if not args.skip_naive:
            print("naive (resize everything up front, backbone every epoch) ...")
            results["naive"] = run_naive(args, work, weights)
    return results


def speedups(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    naive = results["naive"]
    tools = ("tool_cold", "tool_warm")
    out = {f"naive_over_{k}": round(naive["wall_s"] / results[k]["wall_s"], 2) for k in tools}
    # Stage 1 alone, from the loaded arrays to a trained head: the naive way's resize + fit
    # against the tool's feature extraction + head epochs (no test, checkpoints or plots).
    naive_stage1 = naive["resize_seconds"] + naive["fit_seconds"]
    out.update(
        {
            f"stage1_naive_over_{k}": round(naive_stage1 / results[k]["stage1_seconds"], 2)
            for k in tools
        }
    )
    out.update(
        {
            f"cpu_naive_over_{k}": round(naive["cpu_s"] / max(results[k]["cpu_s"], 1e-9), 2)
            for k in tools
        }
    )
    return out


def compare(report: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    """The naive way against the tool: speed-ups and the accuracy match, into `report` and
    printed."""
    report["speedup"] = s = speedups(results)
    diff = 100 * (results["tool_cold"]["test_accuracy"] - results["naive"]["test_accuracy"])
    report["accuracy_diff_points"] = round(diff, 2)
    report["accuracy_match_within_0_5"] = abs(diff) <= 0.5
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras

    from fmnist_tl.errors import FmnistError

    report = first_report(args)
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
    report["stage1"] = stage1_settings(args, config)
    print(preflight(args, config.model.input_size))
    try:
        results = run_phases(args, report)
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    first = next(iter(results.values()))
    report["weights_used"] = results.get("tool_cold", {}).get("weights_used", args.weights)
    report["results"] = results
    print()
    print(table(results))
    if "naive" in results and "tool_cold" in results:
        compare(report, results)
    if report["weights_used"].startswith("none"):
        print("note: random frozen weights; accuracies are at chance and say nothing.")
    print(f"memory: {first['memory_method']}; keras {keras.__version__}")
    from fmnist_tl import atomic

    atomic.write_json(args.out, report)  # a killed benchmark never leaves half a report
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

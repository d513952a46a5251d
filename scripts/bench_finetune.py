#!/usr/bin/env python
"""Stage 2 streaming against stage 2 on cached activations, in one process, on the same data.

Runs `fmnist train CONFIG` (configs/mobilenet.yaml unless --config says otherwise) with both
stages, `finetune.activation_cache=auto` once per frozen pass (--passes: runtime.frozen_pass
keras, xnnpack) and `=off` once, alternating (auto with each pass, off, ... for --rounds
rounds), with the same seed, data subset and split, each run on a fresh, empty cache, and
reports for the finetune stage: seconds per epoch, img/s, the stage's wall time, peak memory
(VmHWM reset + 10 ms sampler, phase_memory.py), test accuracy, and the ratio. Every run pays
its pass over the backbone in stage 1 (`pass s`: timings.features_s; for a cached stage 2 it
is the pass through the frozen bottom that makes both stage 1's features and stage 2's
activations), made by the pass named in the `pass` column.

The floor: the top sub-model (the cut onward plus the head) trained on the cached activations
with a plain `fit` and no callbacks, timed alone: the faster of two epochs after a warm-up one.

    .venv/bin/python scripts/bench_finetune.py \\
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5 --train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phase_memory import MB, RssMonitor  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/mobilenet.yaml")
    p.add_argument("--weights", required=True, help="backbone weights file (.weights.h5)")
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    p.add_argument("--unfreeze-from", default="block_13")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--passes", default="keras,xnnpack", help="runtime.frozen_pass values")
    p.add_argument("--work", default=".cache/bench_finetune", help="runs, logs and caches")
    p.add_argument("--out", default="bench_finetune.json")
    return p.parse_args(argv)


def overrides(args: argparse.Namespace, cache: str, frozen_pass: str) -> list[str]:
    work = Path(args.work)
    out = [
        f"runtime.frozen_pass={frozen_pass}",
        f"model.weights={Path(args.weights).resolve()}",
        f"data.train_limit={args.train_limit}",
        f"finetune.epochs={args.epochs}",
        f"finetune.unfreeze_from={args.unfreeze_from}",
        "finetune.patience=null",  # both ways run every epoch
        f"finetune.activation_cache={cache}",
        f"output.dir={work / 'runs'}",
        f"output.log_dir={work / 'logs'}",
        f"output.cache_dir={work / 'cache' / f'{cache}-{frozen_pass}'}",
        "output.update_best=false",
        "runtime.verbose=silent",
    ]
    return out + ([f"data.test_limit={args.test_limit}"] if args.test_limit else [])


def one_run(args: argparse.Namespace, cache: str, frozen_pass: str) -> dict[str, Any]:
    import keras

    from fmnist_tl.config import load_config
    from fmnist_tl.training.trainer import train

    config = load_config(args.config, overrides(args, cache, frozen_pass))
    shutil.rmtree(config.output.cache_dir, ignore_errors=True)  # the run pays its pass
    with RssMonitor() as mem:
        result = train(config)
    keras.backend.clear_session()
    stage = result.metrics.stages[-1]
    epochs = [r["seconds"] for r in result.history if r["stage"] == "finetune"]
    n = result.metrics.data.train if result.metrics.data else 0
    return {
        "cache": cache,
        "frozen_pass": frozen_pass,
        "pass_s": result.metrics.timings.get("features_s"),
        "feature_pass": result.metrics.stages[0].feature_pass,
        "activation_pass": stage.activation_pass,
        "finetune_wall_s": stage.wall_time_s,
        "epoch_s": epochs,
        "images_per_s": round(n * len(epochs) / sum(epochs), 1),
        "activation_cache": stage.activation_cache,
        "activation_seconds": stage.activation_seconds,
        "activation_mb": stage.activation_mb,
        "peak_mb": round((mem.peak - mem.start) / MB, 1),
        "cpu_s": round(mem.cpu_s, 1),
        "test_accuracy": result.metrics.test.accuracy,
        "run_wall_s": result.metrics.wall_time_s,
        "run": str(result.run_dir),
    }


def floor(args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    """One epoch of the top sub-model on the cached activations, plain fit, no callbacks."""
    import keras

    from fmnist_tl.config import load_config
    from fmnist_tl.models.assembly import find_backbone
    from fmnist_tl.training.fit import dataset
    from fmnist_tl.training.freezing import unfreeze_from
    from fmnist_tl.training.optim import compile_model, steps_per_epoch
    from fmnist_tl.training.splits import prepare_data
    from fmnist_tl.training.stage2 import plan_stage2, stage2_inputs

    config = load_config(Path(run_dir) / "config.yaml")
    model = keras.models.load_model(Path(run_dir) / "best.keras", compile=False)
    splits = prepare_data(config)
    plan = plan_stage2(config, model, len(splits.x_pool), None)
    unfreeze_from(find_backbone(model), str(config.finetune.unfreeze_from))
    inputs = stage2_inputs(config, model, splits, plan)
    d, batch = inputs.data, config.train.batch_size
    compile_model(inputs.model, config, "finetune", steps_per_epoch(len(d.x_train), batch))
    ds = dataset(config, d.x_train, d.y_train, shuffle=True, batch=batch, views=d.views)
    inputs.model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing
    timed = []
    for _ in range(2):  # the faster of two epochs: the VM's speed comes in phases
        t0 = time.perf_counter()
        inputs.model.fit(ds, epochs=1, verbose=0)
        timed.append(time.perf_counter() - t0)
    seconds = min(timed)
    return {
        "epoch_s": round(seconds, 2),
        "epochs_timed_s": [round(t, 2) for t in timed],
        "images_per_s": round(len(d.x_train) / seconds, 1),
    }


def table(runs: list[dict[str, Any]]) -> None:
    """One row per run: the pass that made the features and its seconds, then stage 2."""
    header = f"{'run':<6}{'pass':>9}{'pass s':>8}{'stage2 s':>10}{'epoch s':>22}{'img/s':>9}"
    print(f"\n{header}{'peak +MB':>10}{'test acc':>10}")
    for x in runs:
        epochs = " ".join(f"{s:.1f}" for s in x["epoch_s"])
        print(
            f"{x['cache']:<6}{x['feature_pass']:>9}{x['pass_s'] or 0:>8.1f}"
            f"{x['finetune_wall_s']:>10.1f}{epochs:>22}{x['images_per_s']:>9.0f}"
            f"{x['peak_mb']:>10.1f}{x['test_accuracy']:>10.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fmnist_tl.machine import cpu_model, versions

    passes = args.passes.split(",")
    runs = []
    for r in range(args.rounds):
        for cache, frozen_pass in [*(("auto", p) for p in passes), ("off", passes[0])]:
            print(f"round {r + 1}: activation_cache={cache} frozen_pass={frozen_pass}", flush=True)
            runs.append(one_run(args, cache, frozen_pass))
    fl = floor(args, next(x["run"] for x in runs if x["cache"] == "auto"))
    auto = [x for x in runs if x["cache"] == "auto"]
    off = [x for x in runs if x["cache"] == "off"]
    table(runs)
    ratio = mean([x["finetune_wall_s"] for x in off]) / mean([x["finetune_wall_s"] for x in auto])
    made = {p: [x["pass_s"] or 0.0 for x in auto if x["feature_pass"] == p] for p in passes}
    by_pass = {p: round(mean(v), 2) for p, v in made.items() if v}  # a fallback made none
    per_epoch = [s for x in auto for s in x["epoch_s"]]
    vs_floor = (sum(per_epoch) / len(per_epoch)) / fl["epoch_s"]
    rate = f"{fl['images_per_s']:.0f} img/s"
    print(f"floor: top sub-model alone {fl['epoch_s']:.2f} s/epoch ({rate})")
    print(f"finetune stage: off / auto = {ratio:.2f}x; cached epoch / floor = {vs_floor:.2f}x")
    print(
        "pass over the backbone (stage 1, auto): "
        + ", ".join(f"{p} {v:.1f} s" for p, v in by_pass.items())
    )
    report = {
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "versions": versions()},
        "runs": runs,
        "floor": fl,
        "ratio_finetune_stage": round(ratio, 2),
        "cached_epoch_over_floor": round(vs_floor, 2),
        "pass_s": by_pass,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} (CPU: {cpu_model()}, {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

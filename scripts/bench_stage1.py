#!/usr/bin/env python
"""A stage-1-only `fmnist train` as a whole process, against its own pass over the backbone.

Runs `fmnist train CONFIG --set finetune.epochs=0` as a real subprocess --rounds times, each
with a fresh, empty cache (so every round extracts its features), and reads the breakdown
the run writes to metrics.json (`timings`). The backbone pass covers the training pool and the
test images: a run that trains only the head is tested on the test images' features
(trainer._finish), so the backbone runs once per image. Prints, per round, the process's wall
time measured from outside (interpreter start to exit), the breakdown, and the ratio

    process wall / backbone pass  (features_s + test_features_s)

    .venv/bin/python scripts/bench_stage1.py \\
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5 --train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = (
    "startup_s",
    "prepare_s",
    "features_s",
    "test_features_s",
    "head_s",
    "test_s",
    "reports_s",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/mobilenet.yaml")
    p.add_argument("--weights", required=True, help="backbone weights file (.weights.h5)")
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work", default=".cache/bench_stage1", help="runs, logs and caches")
    p.add_argument("--out", default="bench_stage1.json")
    return p.parse_args(argv)


def one_round(args: argparse.Namespace, r: int) -> dict:
    work = Path(args.work) / f"round{r}"
    shutil.rmtree(work, ignore_errors=True)  # an empty cache: the features are extracted
    sets = [
        f"model.weights={Path(args.weights).resolve()}",
        f"data.train_limit={args.train_limit}",
        "finetune.epochs=0",
        f"output.dir={work / 'runs'}",
        f"output.log_dir={work / 'logs'}",
        f"output.cache_dir={work / 'cache'}",
        "output.update_best=false",
        "runtime.verbose=silent",
    ]
    fmnist = Path(sys.executable).with_name("fmnist")
    cmd = [str(fmnist), "train", args.config, *(a for s in sets for a in ("--set", s))]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"round {r}: fmnist train exited {done.returncode}: {done.stderr.strip()}")
    (metrics_path,) = (work / "runs").glob("*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    t = metrics["timings"]
    backbone = t["features_s"] + t.get("test_features_s", 0.0)
    return {
        "wall_s": round(wall, 2),
        "timings": t,
        "backbone_pass_s": round(backbone, 2),
        "ratio": round(wall / backbone, 3),
        "test_accuracy": metrics["test"]["accuracy"],
        "images": metrics["data"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = []
    for r in range(1, args.rounds + 1):
        rounds.append(one_round(args, r))
        x = rounds[-1]
        parts = "  ".join(f"{k.removesuffix('_s')} {x['timings'].get(k, 0.0):.1f}" for k in PARTS)
        print(
            f"round {r}: process {x['wall_s']:.1f} s = {x['ratio']:.2f}x its backbone pass "
            f"({x['backbone_pass_s']:.1f} s); {parts}; test accuracy {x['test_accuracy']:.4f}",
            flush=True,
        )
    report = {"settings": vars(args), "cpus": os.cpu_count(), "rounds": rounds}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""A stage-1-only `fmnist train` as a whole process, against its own pass over the backbone,
with each frozen pass (runtime.frozen_pass: keras, xnnpack), and the two passes side by side.

Runs `fmnist train CONFIG --set finetune.epochs=0` as a real subprocess --rounds times per
pass, alternating the passes within each round, each with a fresh, empty cache (so every run
extracts its features and, for XNNPACK, converts and checks the backbone), and reads the
breakdown the run writes to metrics.json (`timings`). The backbone pass covers the training
pool and the test images: a run that trains only the head is tested on the test images'
features (trainer._finish), so the backbone runs once per image. Prints, per run, the
process's wall time measured from outside (interpreter start to exit), the breakdown, and

    process wall / backbone pass  (features_s + test_features_s)

With --naive, each round also runs the seed notebooks' way as its own whole process
(`scripts/bench_frozen.py --naive-only`: the whole arrays resized up front, the frozen backbone
inside the model re-run every epoch, the same subset, split, head, optimizer and epochs, early
stopping off), timed the same way from outside, and prints the seed-style process over each
tool process.

Then, in this process (--pass-images, 0 to skip), the feature extractor's two passes on the
same real images, alternating: `inference.infer` (Keras) and the converted model on XNNPACK
(models/litert.py), img/s each time, the conversion's seconds and the largest difference.

    .venv/bin/python scripts/bench_stage1.py \\
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5 --train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

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
    p.add_argument("--test-limit", type=int, default=None, help="[default: all 10,000]")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--passes", default="keras,xnnpack", help="runtime.frozen_pass values")
    p.add_argument("--pass-images", type=int, default=4096, help="0: no in-process comparison")
    p.add_argument("--pass-rounds", type=int, default=3)
    p.add_argument("--naive", action="store_true", help="also the seed-style way, per round")
    p.add_argument("--work", default=".cache/bench_stage1", help="runs, logs and caches")
    p.add_argument("--out", default="bench_stage1.json")
    return p.parse_args(argv)


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `cmd` as a whole process from the repository root: its wall seconds measured from
    outside (interpreter start to exit) and its CPU seconds (every thread)."""
    t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(after, k) - getattr(before, k) for k in ("ru_utime", "ru_stime"))
    return done, wall, cpu


def naive_round(args: argparse.Namespace, r: int) -> dict:
    """The seed-style way as a whole process on the same subset and stage-1 settings."""
    out = Path(args.work) / f"round{r}-naive.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "bench_frozen.py"),
        "--naive-only",
        "--config",
        args.config,
        "--weights",
        str(Path(args.weights).resolve()),
        "--train-limit",
        str(args.train_limit),
        "--out",
        str(out),
    ]
    cmd += ["--test-limit", str(args.test_limit)] if args.test_limit else []
    done, wall, cpu = timed(cmd)
    if done.returncode != 0:
        sys.exit(f"round {r}: the naive way exited {done.returncode}: {done.stderr.strip()}")
    naive = json.loads(out.read_text())["results"]["naive"]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "epochs_run": naive["epochs_run"],
        "test_accuracy": naive["test_accuracy"],
        "test_accuracy_last_epoch": naive["test_accuracy_last_epoch"],
        "fit_s": naive["fit_seconds"],
        "n_train": naive["n_train"],
    }


def one_round(args: argparse.Namespace, r: int, frozen_pass: str) -> dict:
    work = Path(args.work) / f"round{r}-{frozen_pass}"
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
        f"runtime.frozen_pass={frozen_pass}",
    ]
    sets += [f"data.test_limit={args.test_limit}"] if args.test_limit else []
    fmnist = Path(sys.executable).with_name("fmnist")
    cmd = [str(fmnist), "train", args.config, *(a for s in sets for a in ("--set", s))]
    done, wall, cpu = timed(cmd)
    if done.returncode != 0:
        sys.exit(f"round {r}: fmnist train exited {done.returncode}: {done.stderr.strip()}")
    (metrics_path,) = (work / "runs").glob("*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    t = metrics["timings"]
    backbone = t["features_s"] + t.get("test_features_s", 0.0)
    images = metrics["data"]["train"] + metrics["data"]["val"] + metrics["data"]["test"]
    return {
        "frozen_pass": frozen_pass,
        "feature_pass": metrics["stages"][0].get("feature_pass"),
        "test_pass": metrics.get("test_pass"),
        "features_img_s": round(images / backbone, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # the whole process, every thread
        "timings": t,
        "backbone_pass_s": round(backbone, 2),
        "ratio": round(wall / backbone, 3),
        "test_accuracy": metrics["test"]["accuracy"],
        "epochs_run": metrics["stages"][0]["epochs_run"],
        "images": metrics["data"],
    }


def pass_speed(args: argparse.Namespace) -> dict:
    """The feature extractor's Keras and XNNPACK passes on the same images, alternating: per
    round, the wall and CPU seconds (every thread of this process) of each."""
    from fmnist_tl.config import load_config
    from fmnist_tl.data.sources import load_fashion_mnist
    from fmnist_tl.models import litert
    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.models.inference import infer

    config = load_config(args.config, [f"model.weights={Path(args.weights).resolve()}"])
    extractor = build_model(config).feature_extractor
    x = load_fashion_mnist(config.data.dir).x_train[: args.pass_images]
    t0 = time.perf_counter()
    compiled = litert.Compiled(litert.convert(extractor))
    convert_s = time.perf_counter() - t0
    runs = {"keras": lambda: infer(extractor, x), "xnnpack": lambda: compiled(x)}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for _ in range(args.pass_rounds):
        for name, run in runs.items():  # alternating: the machine's phases hit both
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[name] = run()
            wall[name].append(round(time.perf_counter() - t0, 3))
            cpu[name].append(round(time.process_time() - c0, 3))
    diff = float(abs(outputs["xnnpack"] - outputs["keras"]).max())
    return {
        "images": len(x),
        "wall_s": wall,
        "cpu_s": cpu,
        "img_s": {k: round(len(x) / median(v), 1) for k, v in wall.items()},
        "wall_ms_per_image": {k: round(1e3 * median(v) / len(x), 3) for k, v in wall.items()},
        "cpu_ms_per_image": {k: round(1e3 * median(v) / len(x), 3) for k, v in cpu.items()},
        "convert_s": round(convert_s, 2),
        "threads": compiled.threads,
        "runtime": litert.runtime(),
        "max_abs_diff": diff,
        "scale": float(abs(outputs["keras"]).max()),
    }


def summary(rounds: list[dict]) -> dict[str, dict[str, float]]:
    """Per pass, the medians over rounds: the process's wall and CPU seconds, its backbone
    pass's seconds and img/s, the process over its pass."""
    out: dict[str, dict[str, float]] = {}
    for p in dict.fromkeys(r["frozen_pass"] for r in rounds):
        mine = [r for r in rounds if r["frozen_pass"] == p]
        out[p] = {
            k: round(median(r[k] for r in mine), 3)
            for k in ("wall_s", "cpu_s", "backbone_pass_s", "features_img_s", "ratio")
        }
    return out


def tool_line(r: int, x: dict) -> str:
    parts = "  ".join(f"{k.removesuffix('_s')} {x['timings'].get(k, 0.0):.1f}" for k in PARTS)
    return (
        f"round {r} {x['frozen_pass']:<8} (features by {x['feature_pass']}): process "
        f"{x['wall_s']:.1f} s ({x['cpu_s']:.1f} CPU s) = {x['ratio']:.2f}x its backbone "
        f"pass ({x['backbone_pass_s']:.1f} s, {x['features_img_s']:.0f} img/s); {parts}; "
        f"test accuracy {x['test_accuracy']:.4f} after {x['epochs_run']} epochs"
    )


def naive_line(r: int, n: dict, tools: list[dict]) -> str:
    """The seed-style process, and its wall and CPU seconds over each tool process's."""
    ratios = ", ".join(
        f"{x['frozen_pass']} {n['wall_s'] / x['wall_s']:.1f}x wall, "
        f"{n['cpu_s'] / x['cpu_s']:.1f}x CPU"
        for x in tools
    )
    return (
        f"round {r} seed-style: process {n['wall_s']:.1f} s ({n['cpu_s']:.1f} CPU s), "
        f"{n['epochs_run']} epochs (fit {n['fit_s']:.1f} s), test accuracy "
        f"{n['test_accuracy']:.4f} (best epoch), {n['test_accuracy_last_epoch']:.4f} "
        f"(last); seed-style over the tool: {ratios}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fmnist_tl.machine import cpu_model

    rounds, naive = [], []
    for r in range(1, args.rounds + 1):
        for frozen_pass in args.passes.split(","):
            rounds.append(one_round(args, r, frozen_pass))
            print(tool_line(r, rounds[-1]), flush=True)
        if args.naive:
            naive.append(naive_round(args, r))
            print(naive_line(r, naive[-1], rounds[-len(args.passes.split(",")) :]), flush=True)
    medians = summary(rounds)
    for p, m in medians.items():
        print(
            f"median {p:<8}: process {m['wall_s']:.1f} s, {m['cpu_s']:.1f} CPU s; backbone pass "
            f"{m['backbone_pass_s']:.1f} s ({m['features_img_s']:.0f} img/s); "
            f"process / pass {m['ratio']:.2f}x",
            flush=True,
        )
    speed = pass_speed(args) if args.pass_images else None
    if speed is not None:
        per = "; ".join(
            f"{k} {speed['img_s'][k]:.0f} img/s, {speed['wall_ms_per_image'][k]:.2f} ms and "
            f"{speed['cpu_ms_per_image'][k]:.2f} CPU ms per image"
            for k in speed["img_s"]
        )
        print(
            f"pass on {speed['images']} images, medians of {args.pass_rounds} alternating "
            f"rounds: {per}; converted in {speed['convert_s']:.1f} s ({speed['runtime']}, "
            f"{speed['threads']} threads); largest difference {speed['max_abs_diff']:.2e} at a "
            f"scale of {speed['scale']:.3g}"
        )
    report = {
        "settings": vars(args),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "rounds": rounds,
        "medians": medians,
        "naive": naive,
        "pass": speed,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} (CPU: {cpu_model()}, {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

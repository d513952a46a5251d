#!/usr/bin/env python
"""Each frozen pass of a config both ways, side by side in one process: Keras (inference.infer)
against the same model converted and run by XNNPACK (models/litert.py).

The passes: the feature extractor (stage 1's features and the test images' features), the
bottom below stage 2's cut (finetune.unfreeze_from, or --cut), and the whole model (a run's test
pass, `evaluate`, `predict`; its head untrained, which changes no timing). For each, on the
same real images, --rounds alternating rounds (Keras, XNNPACK, Keras, ...), each timed in wall
seconds and CPU seconds (every thread of this process); reported as medians per image, with
the conversion's seconds and the largest difference relative to the largest Keras value.

    .venv/bin/python scripts/bench_passes.py \\
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5 --images 4096
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/mobilenet.yaml")
    p.add_argument("--weights", required=True, help="backbone weights: none or a .weights.h5")
    p.add_argument("--images", type=int, default=4096, help="test images per pass")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", default="features,bottom,model", help="which passes, in order")
    p.add_argument("--cut", action="append", default=[], help="finetune.unfreeze_from values")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    p.add_argument("--out", default="bench_passes.json")
    return p.parse_args(argv)


def models(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, frozen Keras model) for each pass asked for."""
    from fmnist_tl.config import load_config
    from fmnist_tl.models.assembly import build_model, find_backbone
    from fmnist_tl.training.activations import find_cut, split_model

    weights = args.weights if args.weights == "none" else str(Path(args.weights).resolve())
    config = load_config(args.config, [f"model.weights={weights}", *args.sets])
    built = build_model(config)
    out = []
    for name in args.passes.split(","):
        if name == "features":
            out.append(("features", built.feature_extractor))
        elif name == "model":
            out.append(("model", built.model))
        elif name == "bottom":
            for where in args.cut or [str(config.finetune.unfreeze_from)]:
                cut = find_cut(find_backbone(built.model), where)
                out.append((f"bottom below {cut.layer}", split_model(built.model, cut).bottom))
        else:
            sys.exit(f"--passes: {name}? (features, bottom, model)")
    return out


def one_pass(model: Any, x: Any, rounds: int) -> dict[str, Any]:
    from fmnist_tl.models import litert
    from fmnist_tl.models.inference import infer

    t0, c0 = time.perf_counter(), time.process_time()
    compiled = litert.Compiled(litert.convert(model))
    convert = (time.perf_counter() - t0, time.process_time() - c0)
    runs = {"keras": lambda: infer(model, x), "xnnpack": lambda: compiled(x)}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    outputs = {}
    for _ in range(rounds):
        for name, run in runs.items():  # alternating: the machine's phases hit both
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[name] = run()
            wall[name].append(round(time.perf_counter() - t0, 3))
            cpu[name].append(round(time.process_time() - c0, 3))
    ref = outputs["keras"]
    diff = float(abs(outputs["xnnpack"] - ref).max())
    n = len(x)
    return {
        "images": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "img_s": {k: round(n / median(v), 1) for k, v in wall.items()},
        "wall_ms_per_image": {k: round(1e3 * median(v) / n, 3) for k, v in wall.items()},
        "cpu_ms_per_image": {k: round(1e3 * median(v) / n, 3) for k, v in cpu.items()},
        "speedup_wall": round(median(wall["keras"]) / median(wall["xnnpack"]), 2),
        "speedup_cpu": round(median(cpu["keras"]) / median(cpu["xnnpack"]), 2),
        "convert_s": round(convert[0], 2),
        "convert_cpu_s": round(convert[1], 2),
        "threads": compiled.threads,
        "max_abs_diff": diff,
        "scale": float(abs(ref).max()),
        "relative_diff": diff / float(abs(ref).max()),
        "shape": list(ref.shape[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fmnist_tl.data.sources import load_fashion_mnist
    from fmnist_tl.machine import cpu_model, versions
    from fmnist_tl.models import litert

    x = load_fashion_mnist(allow_download=False).x_test[: args.images]
    machine = f"{cpu_model()}, {os.cpu_count()} cores, {litert.runtime()}"
    print(f"{len(x)} test images, {args.rounds} alternating rounds; {machine}", flush=True)
    results = {}
    for name, model in models(args):
        r = results[name] = one_pass(model, x, args.rounds)
        print(
            f"{name}: img/s keras {r['img_s']['keras']:.0f}, xnnpack {r['img_s']['xnnpack']:.0f} "
            f"({r['speedup_wall']:.2f}x wall); CPU ms/image keras "
            f"{r['cpu_ms_per_image']['keras']:.2f}, xnnpack {r['cpu_ms_per_image']['xnnpack']:.2f}"
            f" ({r['speedup_cpu']:.2f}x); converted in {r['convert_s']:.1f} s "
            f"({r['convert_cpu_s']:.1f} CPU s); largest difference {r['max_abs_diff']:.2e} at a "
            f"scale of {r['scale']:.3g} ({r['relative_diff']:.1e} of it)",
            flush=True,
        )
    report = {
        "settings": vars(args),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "versions": versions()},
        "runtime": litert.runtime(),
        "passes": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

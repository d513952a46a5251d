#!/usr/bin/env python
"""TensorFlow's oneDNN CPU kernels on and off: training and inference throughput, side by side.

TF_ENABLE_ONEDNN_OPTS is read once, when TensorFlow loads, so one process cannot compare the two
settings. This script alternates child processes (off, on, off, on, ...) so that both settings
see the same machine phases, and reports every measurement with the median and the best per
setting. Each child, on synthetic data:

  cnn_best   fits configs/cnn_best.yaml's model (augmentation and optimizer included) for one
             epoch of --train-images images, after a warm-up epoch: training img/s
  mobilenet  extracts MobileNetV2@96 pooled features (random weights) of --infer-images images
             through fmnist_tl.models.inference.infer, after a warm-up batch: inference img/s

  .venv/bin/python scripts/bench_onednn.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def child(train_images: int, infer_images: int) -> dict[str, float]:
    import numpy as np

    from fmnist_tl.config import load_config
    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.models.inference import infer
    from fmnist_tl.training.fit import dataset
    from fmnist_tl.training.optim import compile_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (max(train_images, infer_images), 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, len(x)).astype(np.int64)
    cfg = load_config("configs/cnn_best.yaml", [])
    built = build_model(cfg)
    batch = cfg.train.batch_size
    compile_model(built.model, cfg, "head", train_images // batch)
    ds = dataset(cfg, x[:train_images], y[:train_images], shuffle=True, batch=batch)
    built.model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing
    t = time.perf_counter()
    built.model.fit(ds, epochs=1, verbose=0)
    train_rate = train_images / (time.perf_counter() - t)

    mcfg = load_config(
        "configs/mobilenet.yaml", ["model.weights=none", "model.freeze_backbone=true"]
    )
    extractor = build_model(mcfg).feature_extractor
    infer(extractor, x[:64])  # warm-up: tracing
    t = time.perf_counter()
    infer(extractor, x[:infer_images])
    infer_rate = infer_images / (time.perf_counter() - t)
    return {"cnn_best": train_rate, "mobilenet": infer_rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="off/on pairs of child processes")
    p.add_argument("--train-images", type=int, default=4096)
    p.add_argument("--infer-images", type=int, default=1024)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.train_images, args.infer_images)))
        return

    results: dict[str, list[dict[str, float]]] = {"0": [], "1": []}
    for r in range(args.rounds):
        for setting in ("0", "1"):
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
            cmd = [sys.executable, __file__, "--child"]
            cmd += ["--train-images", str(args.train_images)]
            cmd += ["--infer-images", str(args.infer_images)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rates = json.loads(out.stdout.strip().splitlines()[-1])
            results[setting].append(rates)
            shown = "  ".join(f"{k} {v:7.1f} img/s" for k, v in rates.items())
            print(f"round {r + 1} oneDNN {'on ' if setting == '1' else 'off'}  {shown}", flush=True)
    print()
    for what in ("cnn_best", "mobilenet"):
        off = [m[what] for m in results["0"]]
        on = [m[what] for m in results["1"]]
        print(
            f"{what:9s} median off {statistics.median(off):7.1f}  on {statistics.median(on):7.1f}"
            f"  ({statistics.median(on) / statistics.median(off):.2f}x)   best off "
            f"{max(off):7.1f}  on {max(on):7.1f}  ({max(on) / max(off):.2f}x)"
        )


if __name__ == "__main__":
    main()

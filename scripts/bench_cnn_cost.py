#!/usr/bin/env python
"""Training cost of scratch-CNN variants: CPU milliseconds per image, side by side.

Wall time on a shared 2-core VM moves with the cores the host hands out; the CPU time a
process used (os.times) moves far less, so variants are compared by it (it also counts threads
spinning while they wait, so it is a close, not exact, measure of work). Every variant is
built from one config plus its --set overrides (augmentation layers included), compiled by the
tool's own compile_model and fed by its tf.data pipeline, and all of them take turns in one process
(round 1: a, b, c; round 2: a, b, c; ...), so they see the same machine phases.

  .venv/bin/python scripts/bench_cnn_cost.py                  # cnn_best.yaml and its ablations
  .venv/bin/python scripts/bench_cnn_cost.py --variant wide="model.cnn.filters=[32,96,192]"
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# cnn_best.yaml, then its choices undone one at a time (and the first two together: the net it
# was chosen over), then the recipe it replaced.
DEFAULT_VARIANTS = {
    "cnn_best": "",
    "32_first": "model.cnn.filters=[32,64,128]",
    "conv2_at_7x7": "model.cnn.convs_per_block=[1,1,2]",
    "both_undone": "model.cnn.filters=[32,64,128] model.cnn.convs_per_block=[1,1,2]",
    "pool_last": "model.cnn.pool=true",
    "previous": (
        "model.cnn.filters=[32,64,128] model.cnn.convs_per_block=[1,1,2] "
        "model.cnn.pool=true model.cnn.dropout=0.1"
    ),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/cnn_best.yaml")
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=OVERRIDES",
        help="a name and space-separated --set overrides (repeatable; replaces the defaults)",
    )
    p.add_argument("--images", type=int, default=6144, help="synthetic images per epoch")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    variants = DEFAULT_VARIANTS
    if args.variant:
        variants = dict(v.split("=", 1) if "=" in v else (v, "") for v in args.variant)

    import numpy as np

    from fmnist_tl.config import load_config
    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.training.fit import dataset
    from fmnist_tl.training.optim import compile_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, args.images).astype(np.int64)
    runs = {}
    for name, overrides in variants.items():
        cfg = load_config(args.config, overrides.split())
        model = build_model(cfg).model
        steps = args.images // cfg.train.batch_size
        compile_model(model, cfg, "head", steps)
        ds = dataset(cfg, x, y, shuffle=True, batch=cfg.train.batch_size)
        model.fit(ds.take(4), epochs=1, verbose=0)  # warm-up: tracing
        runs[name] = (model, ds)
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(1, args.rounds + 1):
        for name, (model, ds) in runs.items():
            t0, w0 = os.times(), time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            t1, wall = os.times(), time.perf_counter() - w0
            cpu = t1.user + t1.system - t0.user - t0.system
            ms[name].append(cpu / args.images * 1e3)
            print(
                f"round {r} {name:14s} {ms[name][-1]:5.2f} CPU ms/img  "
                f"{args.images / wall:6.0f} img/s wall  ({cpu / wall:.2f} cores busy)",
                flush=True,
            )
    base = statistics.median(ms[next(iter(variants))])
    print()
    for name, (model, _) in runs.items():
        med = statistics.median(ms[name])
        print(
            f"{name:14s} median {med:5.2f} CPU ms/img  ({med / base:4.2f}x the first)  "
            f"{model.count_params():9,d} params  [{variants[name] or 'as the config'}]"
        )


if __name__ == "__main__":
    main()

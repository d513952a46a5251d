#!/usr/bin/env python
"""Stage 2's top trained on a memory-mapped activation cache against the same cache in memory.

A cache read back from disk is memory-mapped (data.pipeline.Rows: each batch's rows are read from
the mapped file), so a large cache is never copied into the process whole. This times what
that costs: in ONE process, alternating, one epoch of the top sub-model (the cut onward plus
the head) with a plain `fit` on the mapped rows, then on the same rows loaded into memory,
for --rounds rounds after one warm-up epoch each. Also prints the process's resident memory
after each way's dataset is built.

    .venv/bin/python scripts/bench_mapped.py --run .cache/bench_finetune/runs/<an auto run>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder whose stage 2 used the cache")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    import keras
    import numpy as np

    from fmnist_tl.config import load_config
    from fmnist_tl.data import pipeline
    from fmnist_tl.models.assembly import find_backbone
    from fmnist_tl.training.fit import dataset
    from fmnist_tl.training.freezing import unfreeze_from
    from fmnist_tl.training.optim import compile_model, steps_per_epoch
    from fmnist_tl.training.splits import prepare_data
    from fmnist_tl.training.stage2 import plan_stage2, stage2_inputs

    run = Path(args.run)
    config = load_config(run / "config.yaml")
    model = keras.models.load_model(run / "best.keras", compile=False)
    splits = prepare_data(config)
    plan = plan_stage2(config, model, len(splits.x_pool), None)
    unfreeze_from(find_backbone(model), str(config.finetune.unfreeze_from))
    inputs = stage2_inputs(config, model, splits, plan)  # a hit: memory-mapped
    d, batch = inputs.data, config.train.batch_size
    if not isinstance(d.x_train, pipeline.Rows):
        sys.exit(f"{run}: its activation cache was not read back memory-mapped")
    compile_model(inputs.model, config, "finetune", steps_per_epoch(len(d.x_train), batch))
    before = rss_mb()
    mapped = dataset(config, d.x_train, d.y_train, shuffle=True, batch=batch, views=d.views)
    after_mapped = rss_mb()
    in_memory = d.x_train.take(np.arange(len(d.x_train)))
    loaded = dataset(config, in_memory, d.y_train, shuffle=True, batch=batch, views=d.views)
    after_loaded = rss_mb()
    print(
        f"resident memory: {before:.0f} MB; +{after_mapped - before:.0f} MB for the mapped "
        f"dataset; +{after_loaded - after_mapped:.0f} MB for the rows loaded "
        f"({in_memory.nbytes / 2**20:.0f} MB) and their dataset",
        flush=True,
    )
    ways = {"mapped": mapped, "in memory": loaded}
    for ds in ways.values():
        inputs.model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.rounds):
        for name, ds in ways.items():
            t0 = time.perf_counter()
            inputs.model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name:<9} {times[name][-1]:6.2f} s/epoch", flush=True)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"fastest epoch: mapped {best['mapped']:.2f} s, in memory {best['in memory']:.2f} s "
        f"({len(d.x_train)} rows of {d.x_train.shape[1:]} {d.x_train.base.dtype}); "
        f"mapped / in memory = {best['mapped'] / best['in memory']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""`fmnist evaluate` as a whole process with each frozen pass: Keras's, XNNPACK converting the
model (an empty cache), and XNNPACK once converted (the cache the previous run left).

The model is copied into one folder per way, each with the run's config.yaml beside it set to
that way's `runtime.frozen_pass` and its own `output.cache_dir` (evaluate reads both from the
config beside the model: evaluation.loading.saved_frozen_setup). Each round runs the three
ways in turn, so the machine's phases hit all of them; each process is timed from outside
(wall from interpreter start to exit, CPU over every thread). Prints each run and the medians.

    .venv/bin/python scripts/bench_evaluate.py saved_models/RUN/best.keras --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import median

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stage1 import timed  # noqa: E402  (one way to time a whole process)

WAYS = {"keras": "keras", "xnnpack (converting)": "auto", "xnnpack (converted)": "auto"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a run's best.keras (its config.yaml beside it)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="first N test images [default: all]")
    p.add_argument("--out", default="bench_evaluate.json")
    return p.parse_args(argv)


def folder_for(work: Path, model: Path, way: str, frozen_pass: str) -> Path:
    """A copy of the model with its config set to `frozen_pass` and a cache of the way's own."""
    folder = work / way.split()[0]  # both XNNPACK ways share one folder, hence one cache
    if folder.exists():
        return folder
    folder.mkdir()
    shutil.copy2(model, folder / "best.keras")
    config = yaml.safe_load((model.parent / "config.yaml").read_text())
    config["runtime"]["frozen_pass"] = frozen_pass
    config["output"]["cache_dir"] = str(folder / "cache")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def timed_evaluate(folder: Path, limit: int | None) -> tuple[float, float, dict]:
    fmnist = Path(sys.executable).with_name("fmnist")
    cmd = [str(fmnist), "evaluate", str(folder / "best.keras"), "-o", str(folder / "e.json")]
    cmd += ["--limit", str(limit)] if limit else []
    done, wall, cpu = timed(cmd)
    if done.returncode != 0:
        sys.exit(f"fmnist evaluate exited {done.returncode}: {done.stderr.strip()}")
    return wall, cpu, json.loads((folder / "e.json").read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fmnist_tl.machine import cpu_model

    model = Path(args.model).resolve()
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        for r in range(1, args.rounds + 1):
            for way, frozen_pass in WAYS.items():
                folder = folder_for(Path(tmp), model, way, frozen_pass)
                if way.endswith("(converting)"):
                    shutil.rmtree(folder / "cache", ignore_errors=True)
                wall, cpu, report = timed_evaluate(folder, args.limit)
                runs[way].append(
                    {
                        "wall_s": round(wall, 2),
                        "cpu_s": round(cpu, 2),
                        "pass": report["frozen_pass"],
                        "images": report["n"],
                        "accuracy": report["accuracy"],
                    }
                )
                x = runs[way][-1]
                print(
                    f"round {r} {way:<21} {x['wall_s']:6.1f} s ({x['cpu_s']:5.1f} CPU s) on "
                    f"{x['images']} images by {x['pass']}: accuracy {x['accuracy']:.4f}",
                    flush=True,
                )
    medians = {
        way: {k: median(x[k] for x in xs) for k in ("wall_s", "cpu_s")} for way, xs in runs.items()
    }
    base = medians["keras"]
    for way, m in medians.items():
        print(
            f"median {way:<21} {m['wall_s']:6.1f} s ({m['cpu_s']:5.1f} CPU s): "
            f"{base['wall_s'] / m['wall_s']:.2f}x wall, {base['cpu_s'] / m['cpu_s']:.2f}x CPU"
        )
    report = {"settings": vars(args), "cpu": cpu_model(), "runs": runs, "medians": medians}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} (CPU: {cpu_model()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

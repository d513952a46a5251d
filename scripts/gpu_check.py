"""The GPU path on a user's machine: what TensorFlow sees, where the model runs, how fast.

No GPU here has TensorFlow, so this is the check a user with one runs (scripts/gpu_check.sh):

1. the devices TensorFlow sees (without a GPU: one line, exit 0);
2. the model's resize, gray->RGB, normalisation and backbone ops run on the GPU: one batch
   through the saved-model graph inside tf.device("/GPU:0") with soft placement off, so an
   op that cannot run there fails the check instead of moving to the CPU;
3. configs/quickstart.yaml and configs/mobilenet_best.yaml's two stages on 10,000 images, each
   with and without runtime.mixed_precision and runtime.jit_compile: wall time, images/s per
   stage and test accuracy, read from each run's metrics.json.

    scripts/gpu_check.sh --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import fmnist_tl  # noqa: E402, F401  (first: TensorFlow's start-up lines are held back)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/quickstart.yaml", "configs/mobilenet_best.yaml")
KEYS = ("runtime.mixed_precision", "runtime.jit_compile")


def gpus() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def check_placement(weights: str, device: str = "/GPU:0") -> str:
    """One batch of raw pixels through the full model, every op on `device` or an error."""
    import numpy as np
    import tensorflow as tf

    from fmnist_tl.config import load_config
    from fmnist_tl.models.assembly import build_model

    config = load_config(REPO / CONFIGS[0], [f"model.weights={weights}"])
    model = build_model(config).model
    tf.config.set_soft_device_placement(False)
    x = tf.constant(np.random.default_rng(0).integers(0, 255, (64, 28, 28, 1)), tf.float32)
    with tf.device(device):
        probs = tf.function(lambda t: model(t, training=False))(x)
    return f"placement: resize, to_rgb, normalize and the backbone ran on {probs.device}"


def run(config: str, weights: str, settings: dict[str, bool], root: Path, limit: int) -> dict:
    """One `fmnist train` as a user runs it; its metrics.json."""
    sets = {"model.weights": weights, "output.dir": str(root), "output.update_best": "false"}
    sets |= {"output.log_dir": str(root / "logs"), "output.cache_dir": str(root / "cache")}
    if "best" in config:
        sets["data.train_limit"] = str(limit)
    sets |= {k: str(v).lower() for k, v in settings.items()}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    fmnist = [sys.executable, "-m", "fmnist_tl.cli", "train", str(REPO / config), *args]
    done = subprocess.run(fmnist, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: {config} {settings} failed: {done.stderr.strip()}")
    (run_dir,) = [p for p in root.iterdir() if (p / "metrics.json").is_file()]
    return json.loads((run_dir / "metrics.json").read_text())


def row(config: str, settings: dict[str, bool], m: dict) -> str:
    stages = "  ".join(f"{s['name']} {s['images_per_s'] or 0:,.0f} img/s" for s in m["stages"])
    flags = ", ".join(k.split(".")[1] for k, v in settings.items() if v) or "float32, no XLA"
    return (
        f"{Path(config).stem:16s} {flags:30s} {m['wall_time_s']:8.1f} s  {stages}  "
        f"test accuracy {m['test']['accuracy']:.4f}  ({m['runtime']['precision_policy']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="imagenet", help="imagenet (Keras) or a file")
    parser.add_argument("--train-limit", type=int, default=10_000)
    args = parser.parse_args()
    found = gpus()
    if not found:
        print("gpu_check: TensorFlow sees no GPU on this machine; nothing to check")
        return
    print(f"GPUs TensorFlow sees: {', '.join(found)}")
    weights = args.weights if args.weights == "imagenet" else str(Path(args.weights).resolve())
    print(check_placement(weights))
    for config in CONFIGS:
        for flags in itertools.product((False, True), repeat=len(KEYS)):
            settings = dict(zip(KEYS, flags, strict=True))
            with tempfile.TemporaryDirectory() as root:
                m = run(config, weights, settings, Path(root), args.train_limit)
            print(row(config, settings, m), flush=True)


if __name__ == "__main__":
    main()

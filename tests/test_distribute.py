"""`runtime.distribute=mirrored` really mirrors: two logical CPUs, two replicas, one run.

Logical devices must be configured before TensorFlow initialises its devices, so the CLI runs
in a fresh subprocess: a small launcher splits the physical CPU into two logical devices, then
runs `fmnist_tl.cli` exactly as `python -m fmnist_tl.cli` would (runpy, run_name="__main__").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import SMOKE

LAUNCHER = textwrap.dedent(
    """
    import runpy
    import sys

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    print("logical CPUs:", len(tf.config.list_logical_devices("CPU")), file=sys.stderr)
    sys.argv = ["fmnist", *sys.argv[1:]]
    runpy.run_module("fmnist_tl.cli", run_name="__main__", alter_sys=True)
    """
)


def test_mirrored_training_on_two_logical_cpus(tmp_path, isolated):
    launcher = tmp_path / "two_cpus.py"
    launcher.write_text(LAUNCHER)
    sets = [*isolated, "train.epochs=1", "train.batch_size=32"]
    args = [str(SMOKE), "--set", "runtime.distribute=mirrored"]
    for item in sets:
        args += ["--set", item]
    done = subprocess.run(
        [sys.executable, str(launcher), "train", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "logical CPUs: 2" in done.stderr, done.stderr

    runs = [p for p in (tmp_path / "saved_models").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    metrics_path = runs[0] / "metrics.json"
    assert metrics_path.is_file()
    metrics = json.loads(metrics_path.read_text())
    assert metrics["runtime"]["distribute"] == "mirrored"
    assert metrics["runtime"]["replicas"] == 2
    assert metrics["runtime"]["global_batch_size"] == 2 * 32
    assert metrics["runtime"]["onednn"] is True  # fmnist_tl turns oneDNN on by default
    # The mirrored run streams images (no feature cache) and still trains and evaluates.
    assert "feature_cache" not in metrics["stages"][0]
    assert metrics["stages"][0]["epochs_run"] == 1
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0

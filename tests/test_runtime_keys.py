"""runtime.mixed_precision and runtime.jit_compile take effect, checked on the CPU.

No machine here has a GPU with TensorFlow (scripts/gpu_check.sh is the check for one), so the
GPU's answer to "is there a GPU?" is given to the run: then the mixed_float16 policy is set,
the layers compute in float16, the softmax output stays float32, the step is XLA-compiled,
and the model still trains. Without a GPU, mixed precision is refused in one note.
"""

from __future__ import annotations

import subprocess
import sys

import keras
import pytest
from conftest import REPO, SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.training import runtime
from fmnist_tl.training.trainer import train


@pytest.fixture
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")  # other tests in this worker


def test_mixed_precision_and_xla_take_effect_and_train(isolated, monkeypatch, float32_after):
    monkeypatch.setattr(runtime, "has_gpu", lambda: True)
    keys = ["runtime.mixed_precision=true", "runtime.jit_compile=true", "train.epochs=3"]
    result = train(load_config(SMOKE, [*isolated, *keys]))
    assert result.metrics.runtime.precision_policy == "mixed_float16"
    assert result.metrics.runtime.jit_compile is True
    model = keras.models.load_model(result.model_path, compile=False)
    backbone = model.get_layer("backbone")
    conv = next(layer for layer in backbone.layers if "conv" in layer.name)
    assert conv.dtype_policy.compute_dtype == "float16"  # the policy reached the layers
    predictions = model.get_layer("predictions")
    assert predictions.dtype_policy.name == "float32"  # the output stays float32
    assert model.output.dtype == "float32"
    assert result.metrics.test.accuracy > 0.5  # it trained (the synthetic classes: ~1.0)


def test_jit_compile_reaches_the_compiled_model(isolated, float32_after):
    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.training.optim import compile_model

    config = load_config(SMOKE, [*isolated, "runtime.jit_compile=true"])
    model = build_model(config).model
    compile_model(model, config, "head", steps_per_epoch=1)
    assert model.jit_compile is True


def test_mixed_precision_without_a_gpu_is_one_note(isolated, capsys, float32_after):
    config = load_config(SMOKE, [*isolated, "runtime.mixed_precision=true"])
    runtime.apply(config)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "runtime.mixed_precision is ignored without a GPU" in capsys.readouterr().err


def test_gpu_check_without_a_gpu_says_so_in_one_line():
    done = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpu_check: TensorFlow sees no GPU on this machine; nothing to check"
    ]
    assert done.stderr == ""


def test_the_placement_check_holds_every_op_to_its_device():
    """The GPU check's placement step, run on the CPU device: soft placement off, so an op
    that cannot run on the named device fails it rather than moving."""
    code = (
        "import sys; sys.path.insert(0, 'scripts'); import gpu_check; "
        "print(gpu_check.check_placement('none', '/CPU:0'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "ran on /job:localhost/replica:0/task:0/device:CPU:0" in done.stdout, done.stdout

"""Put MobileNetV2 ImageNet weights where Keras's own `weights="imagenet"` finds them, offline.

keras.applications downloads `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5`
into `$KERAS_HOME/models` (default ~/.keras/models) and loads it from there, without a hash
check, whenever it is present. This writes that file, in the legacy h5 layout Keras reads,
from a weights file of the same network (the shared stand-in, `.weights.h5`), for each size
Keras has its own file for. `model.weights: imagenet` then goes through Keras's real loading
path and loads bit-identical weights: the online user's path, exercised with no network.

    .venv/bin/python scripts/keras_cache.py --keras-home /tmp/keras \
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5
    KERAS_HOME=/tmp/keras .venv/bin/fmnist train configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZES = (96, 128, 160, 192, 224)  # the sizes Keras has a MobileNetV2 file for


def build_cache(weights: Path, keras_home: Path, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    """Write Keras's MobileNetV2 no-top files for `sizes` under keras_home/models."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from fmnist_tl.config.backbones import BACKBONES

    spec = BACKBONES["mobilenet_v2"]
    folder = keras_home / "models"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for size in sizes:
        network = keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=(size, size, 3)
        )
        network.load_weights(str(weights))
        path = folder / spec.imagenet_weights_file(size)
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, network)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="MobileNetV2 .weights.h5")
    parser.add_argument("--keras-home", type=Path, required=True, help="the KERAS_HOME to fill")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    for path in build_cache(args.weights, args.keras_home, tuple(args.sizes)):
        print(path)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""What `runtime.frozen_pass: auto` chooses per backbone, against the two passes' real speed.

For each backbone (MobileNetV2 at 96 px with the given weights; a frozen random VGG16 and
ResNet50 at 32 px, for which no ImageNet weights are here), builds the feature extractor's
frozen pass as a run would (`auto`, enough images to ask for XNNPACK, an empty cache), prints
what it chose and the speed its check timed on 256 real test images, then times the two
passes themselves on 2,048 of them (`inference.infer` against the converted model, after one
warm-up batch each, the best of 2 alternating rounds).

    .venv/bin/python scripts/bench_auto.py \\
        --weights ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="MobileNetV2 weights file (.weights.h5)")
    p.add_argument("--images", type=int, default=2048)
    args = p.parse_args(argv)

    from fmnist_tl.config import load_config
    from fmnist_tl.data.sources import load_fashion_mnist
    from fmnist_tl.models import litert
    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.models.frozen import FrozenPass, PassSetup
    from fmnist_tl.models.inference import infer

    x = load_fashion_mnist().x_test[: args.images]
    frozen = ["model.weights=none", "model.freeze_backbone=true", "model.input_size=32"]
    backbones = {
        "mobilenet_v2 96": ["model.input_size=96", f"model.weights={Path(args.weights).resolve()}"],
        "vgg16 32": ["model.backbone=vgg16", *frozen],
        "resnet50 32": ["model.backbone=resnet50", *frozen],
    }
    for name, sets in backbones.items():
        built = build_model(load_config(None, ["model.backbone=mobilenet_v2", *sets]))
        extractor = built.feature_extractor
        with tempfile.TemporaryDirectory() as cache:
            run = FrozenPass(extractor, PassSetup("auto", Path(cache)), 10**5, head=built.head)
            chose = run.build(x)
        assert run.check is not None
        compiled = litert.Compiled(litert.convert(extractor))
        infer(extractor, x[:128]), compiled(x[:128])  # warm-up
        keras_s, xnnpack_s = [], []
        for _ in range(2):
            t0 = time.perf_counter()
            infer(extractor, x)
            keras_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            compiled(x)
            xnnpack_s.append(time.perf_counter() - t0)
        k, c = min(keras_s), min(xnnpack_s)
        print(
            f"{name}: auto chose {chose}; the check timed {run.check.speed:.2f}x on "
            f"{run.check.images} images; the passes on {len(x)} images: keras {k:.2f} s, "
            f"xnnpack {c:.2f} s = {k / c:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`fmnist evaluate`, `fmnist predict` and `fmnist export`: what a saved model is worth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..paths import check_data_dir, check_model_file, check_report_outputs
from . import render
from .common import (
    DataDirOption,
    JsonOption,
    ModelArg,
    TestFlipOption,
    handle_errors,
    out,
    print_json,
)

ModelsArg = Annotated[
    list[Path],
    typer.Argument(
        help="A .keras model file; several are evaluated as an ensemble (the mean of their "
        "probabilities), each member's scores beside the ensemble's.",
        show_default=False,
        metavar="MODEL...",
    ),
]


@handle_errors
def evaluate(
    models: ModelsArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the JSON report (its pictures go beside it).",
            show_default="beside the model: evaluation.json for the run's own test setup, "
            "else named after what differs, e.g. evaluation.limit50.json",
            metavar="PATH",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test images only.")
    ] = None,
    test_flip: TestFlipOption = None,
    as_json: JsonOption = False,
) -> None:
    """Test accuracy, loss, per-class precision/recall/F1 and the confusion matrix, of a model
    or of an ensemble of several."""
    for model in models:
        check_model_file(model)  # the paths before TensorFlow loads
    check_report_outputs(output)  # the JSON and both pictures, before any is written
    check_data_dir(data_dir, "--data-dir")
    from ..evaluation.report import evaluate as run_evaluate

    result = run_evaluate(
        models, data_dir=data_dir, test_limit=limit, output=output, test_flip=test_flip
    )
    if as_json:
        print_json(result)
        return
    render.print_evaluation(out, " + ".join(str(m) for m in models), result)


@handle_errors
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="One or more .keras models (several: an ensemble), then PNG or JPEG images.",
            show_default=False,
            metavar="MODEL... IMAGE...",
        ),
    ],
    as_json: JsonOption = False,
    test_flip: TestFlipOption = None,
) -> None:
    """The three most likely classes, with probabilities, for each IMAGE."""
    models, images = split_models(paths)
    for model in models:
        check_model_file(model)  # before TensorFlow loads
    from ..evaluation.predict import predict_images

    results = predict_images(models, images, test_flip=test_flip)
    if as_json:
        print_json(results)
        return
    render.print_predictions(out, " + ".join(str(m) for m in models), results)


def split_models(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """MODEL... IMAGE...: the leading .keras files are the models, the rest the images."""
    count = next((i for i, p in enumerate(paths) if p.suffix != ".keras"), len(paths))
    models, images = paths[:count], paths[count:]
    if not models and paths and paths[0].is_dir():
        check_model_file(paths[0])  # a folder where the model goes: say so (exit 3)
    if not models or not images:
        what = "a .keras model" if not models else "an image"
        raise ConfigError(
            f"predict needs {what}: give MODEL.keras [MORE.keras ...] then IMAGE [IMAGE ...]"
        )
    return models, images


@handle_errors
def export(
    model: ModelArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="savedmodel, tflite or onnx (needs the onnx extra).", metavar="F"
        ),
    ],
    output: Annotated[
        Path | None, typer.Option(help="File or folder to write.", show_default="beside MODEL")
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="TFLite weights: none, dynamic (int8) or float16.", metavar="Q")
    ] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export MODEL for deployment, checked against it on real test images before it is kept."""
    from ..evaluation.export import export_model

    result = export_model(
        model, fmt, output=output, quantize=quantize, force=force, data_dir=data_dir
    )
    render.print_export(out, result)

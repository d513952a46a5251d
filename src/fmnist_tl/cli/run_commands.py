"""`fmnist train` (one run, a repeat group, or --resume) and `fmnist finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from ..paths import check_data_dir, check_model_file, check_run_outputs
from ..training.runtime import check_environment
from . import render
from .common import SetOption, err, handle_errors, out, say

if TYPE_CHECKING:
    from ..config import Config


@handle_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="YAML config file (with --resume, only used to find RUN under its output.dir).",
            show_default=False,
            metavar="CONFIG",
        ),
    ] = None,
    set_: SetOption = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            help="Train N times with seeds seed, seed+1, ...; report mean ± std.", metavar="N"
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Train once per seed, e.g. 0,1,2; report mean ± std.", metavar="S,S,..."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue an interrupted run from its last completed epoch: its folder, or "
            "its run id under output.dir (default saved_models).",
            metavar="RUN",
        ),
    ] = None,
) -> None:
    """Train as CONFIG says (frozen-backbone stage, optional fine-tuning, test), or --resume."""
    from ..config import load_config

    if resume is not None:
        root = _runs_root(config, set_, repeat, seeds)
        _check_resumable(resume, root)  # before TensorFlow loads
        from ..training.trainer import resume_run

        render.print_run(out, resume_run(resume, root=root))
        return
    if config is None:
        raise ConfigError(
            "give a CONFIG file to train (e.g. configs/quickstart.yaml), or --resume RUN to "
            "continue an interrupted run"
        )
    cfg = load_config(config, set_)
    _check_run_paths(cfg)  # before TensorFlow loads: a bad path fails in a second, not four
    if repeat is not None or seeds is not None:
        _train_repeated(cfg, repeat, seeds)
        return
    from ..training.trainer import train as run_train

    render.print_run(out, run_train(cfg))


def _train_repeated(cfg: Config, repeat: int | None, seeds: str | None) -> None:
    """`train --repeat/--seeds`: a line per finished run, then the group's table."""
    from ..experiments.seeds import resolve_seeds

    chosen = resolve_seeds(cfg.seed, repeat=repeat, seeds=seeds)  # before TensorFlow loads
    from ..experiments.repeat import run_repeated

    summary = run_repeated(
        cfg,
        chosen,
        on_run=lambda i, seed, r: say(err, render.repeat_run_line(i, len(chosen), seed, r)),
    )
    render.print_repeat(out, summary)


@handle_errors
def finetune(
    model: Annotated[
        Path | None,
        typer.Argument(help="Model to start from.", show_default="saved_models/latest.keras"),
    ] = None,
    unfreeze_from: Annotated[
        str | None,
        typer.Option(help="Unfreeze backbone layers from the first one with this name prefix."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Fine-tuning epochs.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Fine-tuning learning rate.")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Fine-tune a saved model (stage 2 only) with the config saved beside it; new run."""
    if model is not None:  # before TensorFlow loads: the model file, its config, the options
        from ..config.loading import finetune_config
        from ..tracking import require

        cfg = finetune_config(check_model_file(model), unfreeze_from, epochs, learning_rate, set_)
        require(cfg.output)
        check_environment(cfg)
    from ..training.trainer import finetune as run_finetune

    result = run_finetune(
        model,
        unfreeze_from=unfreeze_from,
        epochs=epochs,
        learning_rate=learning_rate,
        overrides=set_,
    )
    render.print_run(out, result)


def _check_resumable(run: str, root: str) -> None:
    """The run folder, its state and its config, as resume_run reads them, without TensorFlow."""
    from ..tracking import require
    from ..training.runfolder import RunFolder

    folder = RunFolder.find(run, root)
    folder.load_resumable()
    config = folder.read_config()
    require(config.output)
    check_environment(config)


def _check_run_paths(cfg: Config) -> None:
    """The data folder, a teacher model, the output folders a run writes, TF_CONFIG and MLflow
    when tracking is asked for, before TensorFlow loads."""
    from ..tracking import require

    check_data_dir(cfg.data.dir)
    if cfg.train.teacher is not None:
        check_model_file(cfg.train.teacher, key="train.teacher")
    check_run_outputs(cfg.output)
    require(cfg.output)
    check_environment(cfg)


def _runs_root(
    config: Path | None, set_: list[str] | None, repeat: int | None, seeds: str | None
) -> str:
    """Where --resume looks for a run id: output.dir of CONFIG and --set, else the default."""
    if repeat is not None or seeds is not None:
        raise ConfigError("--resume continues one run; leave out --repeat and --seeds")
    others = [s for s in set_ or [] if s.partition("=")[0].strip() != "output.dir"]
    if others:
        raise ConfigError(
            f"--resume continues a run with the config saved in it; --set {others[0]} "
            "cannot change it (only output.dir, to find the run, is accepted)"
        )
    from ..config import load_config

    return load_config(config, set_).output.dir

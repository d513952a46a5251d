"""The config's sections of what is trained: data, augmentation, model, both stages. Each key's
default, bounds and one-line meaning live here (and in run_sections.py for where results go and
how runs use the machine and search).

Defaults live here; YAML files and `--set` change only what differs. Each field carries its
meaning (`description`) and its allowed values (types and bounds from `fields.py`), so errors,
`key_table` and `fmnist config keys` read them from here. A section checks its own values and
the rules between its own keys (warmup vs epochs, one convs count per block); rules across
sections are the whole config's (`schema.Config`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import model_validator as checks

from .backbones import BackboneName
from .fields import (
    MAX_BATCH,
    MAX_BLOCKS,
    MAX_EPOCHS,
    MAX_FILTERS,
    MAX_INPUT_SIZE,
    MAX_LAYERS,
    MAX_LR,
    MAX_PENALTY,
    MAX_UNITS,
    TEST_SIZE,
    TRAIN_SIZE,
    Allowed,
    Bool,
    Float,
    Float32,
    Int,
    LayerPrefix,
    PathText,
    shown,
)

ResizeMethod = Literal["nearest", "bilinear", "bicubic", "area", "lanczos3"]
Filters = Annotated[Int, Field(ge=1, le=MAX_FILTERS)]  # conv filters of one cnn block
Width = Annotated[Int, Field(ge=1, le=MAX_UNITS)]  # one hidden Dense layer of the dense baseline


def _key(default: Any, meaning: str, **bounds: Any) -> Any:
    """A field with its default, its one-line meaning (key_table, errors) and its bounds."""
    if callable(default):
        return Field(default_factory=default, description=meaning, **bounds)
    return Field(default, description=meaning, **bounds)


class _Section(BaseModel):
    # Unknown keys are errors, not silently ignored; assignments are re-validated.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where Fashion-MNIST comes from and how much of it a run uses."""

    dir: PathText | None = _key(None, "folder with IDX (.gz or not) or CSV files; null = search")
    train_limit: Int | None = _key(
        None, "first N training examples (quick runs)", ge=1, le=TRAIN_SIZE
    )
    test_limit: Int | None = _key(None, "first N test examples", ge=1, le=TEST_SIZE)
    val_split: Float = _key(0.1, "stratified, seeded share of train held out", ge=0.0, lt=1.0)


class AugmentConfig(_Section):
    """Augmentation on the 28x28 images: random during training, and the test-time flip."""

    flip: Bool = _key(False, "random horizontal flip (clothes are left-right symmetric)")
    translate: Float32 = _key(0.0, "max random shift, fraction of the image side", ge=0.0, le=0.5)
    erase: Float32 = _key(0.0, "probability of random erasing per image", ge=0.0, le=1.0)
    erase_area: Float32 = _key(0.33, "max erased area, fraction of the image", gt=0.02, le=1.0)
    # Twice the inference compute, no training cost.
    test_flip: Bool = _key(False, "evaluate and predict on the mean of each image and its mirror")

    @property
    def mirror_views(self) -> bool:
        """Whether the only augmentation is the random horizontal flip: a cache then keeps
        each image's and its mirror image's features or activations and draws one per epoch,
        the same distribution as flipping the image. Shifts and erasing have no finite set of
        views."""
        return self.flip and self.translate == 0 and self.erase == 0


class HeadConfig(_Section):
    """The classifier on the backbone's output."""

    pooling: Literal["avg", "max", "flatten"] = _key("avg", "over the backbone's feature map")
    units: Int = _key(256, "hidden Dense(relu) width; 0 = no hidden layer", ge=0, le=MAX_UNITS)
    dropout: Float32 = _key(0.3, "dropout before the softmax", ge=0.0, lt=1.0)


class CNNConfig(_Section):
    """The from-scratch `cnn` backbone: conv blocks, each ending in [max-pool] + dropout."""

    filters: list[Filters] = _key(
        lambda: [32, 64, 128], "conv filters per block", min_length=1, max_length=MAX_BLOCKS
    )
    # On a CPU the convs at 28x28 cost the most, so a recipe can give the full-resolution block
    # one conv and the later blocks two. Checked in _check_convs (1-4 each, one per block).
    convs_per_block: Annotated[
        int | list[int], Allowed("int in 1..4, or a list, one per block")
    ] = _key(2, "convs per block: one count, or one per block")
    # A head that flattens the map can keep the last block at 7x7, where position still shows.
    pool: Bool | list[Bool] = _key(True, "max-pool after every block, or one flag per block")
    batch_norm: Bool = _key(True, "BatchNorm after every conv")
    dropout: Float32 = _key(0.25, "dropout at the end of every block", ge=0.0, lt=1.0)
    l2: Float32 = _key(0.0, "L2 weight penalty on conv kernels", ge=0.0, le=MAX_PENALTY)

    @field_validator("convs_per_block", mode="before")
    @classmethod
    def _convs_shape(cls, value: Any) -> Any:
        ok = isinstance(value, int) or (
            isinstance(value, list) and value and all(isinstance(c, int) for c in value)
        )
        bools = isinstance(value, bool) or (
            isinstance(value, list) and any(isinstance(c, bool) for c in value)
        )
        if bools:
            raise ValueError(
                "model.cnn.convs_per_block: a number is needed, not true/false "
                f"(got {shown(value)}); allowed: int in 1..4, or a list, one per block"
            )
        if not ok:
            raise ValueError(
                "model.cnn.convs_per_block must be a whole number of convs (1-4) or a list "
                f"with one per block, e.g. [1, 2, 2]; got {value!r}"
            )
        return value

    @checks(mode="after")
    def _check_convs(self) -> CNNConfig:
        counts = self.convs_per_block
        if isinstance(counts, list) and len(counts) != len(self.filters):
            raise ValueError(
                f"model.cnn.convs_per_block has {len(counts)} entries but model.cnn.filters has "
                f"{len(self.filters)} blocks; give one count per block or a single number"
            )
        if any(not 1 <= c <= 4 for c in self.block_convs()):
            raise ValueError(
                f"model.cnn.convs_per_block must be between 1 and 4 per block, got {counts}"
            )
        if isinstance(self.pool, list) and len(self.pool) != len(self.filters):
            raise ValueError(
                f"model.cnn.pool has {len(self.pool)} entries but model.cnn.filters has "
                f"{len(self.filters)} blocks; give one true/false per block or a single one"
            )
        return self

    def block_convs(self) -> list[int]:
        """The number of convs in each block."""
        counts = self.convs_per_block
        return list(counts) if isinstance(counts, list) else [counts] * len(self.filters)

    def block_pools(self) -> list[bool]:
        """Whether each block ends in a max-pool."""
        return list(self.pool) if isinstance(self.pool, list) else [self.pool] * len(self.filters)


class DenseConfig(_Section):
    """The `dense` baseline: flatten, then these Dense(relu) layers before the head."""

    units: list[Width] = _key(
        list, "widths of the hidden Dense(relu) layers", max_length=MAX_LAYERS
    )
    dropout: Float32 = _key(0.0, "dropout after every hidden layer", ge=0.0, lt=1.0)
    l2: Float32 = _key(0.0, "L2 weight penalty on the hidden kernels", ge=0.0, le=MAX_PENALTY)


class ModelConfig(_Section):
    """Backbone, input resolution and head."""

    backbone: BackboneName = _key("mobilenet_v2", "the feature extractor (config/backbones.py)")
    weights: Annotated[PathText, Allowed("imagenet, none or a weights file path")] = _key(
        "imagenet", "imagenet, none (from scratch) or a weights file path"
    )
    allow_random_weights: Bool = _key(
        False, "if the ImageNet download fails, go on from random weights (recorded)"
    )
    # A frozen random backbone outputs near-constant features: docs/design.md.
    freeze_backbone: Bool | None = _key(
        None, "freeze in stage 1; null = frozen iff the weights are pretrained"
    )
    input_size: Int | None = _key(
        None, "side the 28x28 images are resized to; null = the backbone's", ge=1, le=MAX_INPUT_SIZE
    )
    # A from-scratch MobileNetV2 at 96 px takes many times the minutes of one at 32 px.
    fallback_input_size: Int | None = _key(
        None,
        "input_size when allow_random_weights falls back; null = input_size",
        ge=1,
        le=MAX_INPUT_SIZE,
    )
    resize_method: ResizeMethod = _key("bilinear", "interpolation of that resize")
    head: HeadConfig = _key(HeadConfig, "the classifier head")
    cnn: CNNConfig = _key(CNNConfig, "the from-scratch cnn backbone")
    dense: DenseConfig = _key(DenseConfig, "the dense baseline backbone")


class _Schedule(_Section):
    """The learning-rate schedule of one stage; each stage has its own."""

    epochs: int
    learning_rate: float
    # plateau multiplies by plateau_factor after plateau_patience epochs without improvement.
    schedule: Literal["constant", "cosine", "plateau"] = _key(
        "constant", "constant; cosine decay to min_learning_rate; or plateau"
    )
    warmup_epochs: Float = _key(
        0.0, "linear warmup from 0 (constant and cosine)", ge=0.0, lt=MAX_EPOCHS
    )
    min_learning_rate: Float32 = _key(0.0, "where cosine ends; plateau's floor", ge=0.0, lt=MAX_LR)
    plateau_factor: Float32 = _key(0.5, "plateau: learning-rate multiplier", gt=0.0, lt=1.0)
    plateau_patience: Int = _key(
        2, "plateau: epochs without improvement before a cut", ge=1, le=MAX_EPOCHS
    )
    # timm's --model-ema: validation, the best checkpoint and the stage's result use the average.
    ema: Float32 = _key(
        0.0, "moving average of the weights, decay per step (e.g. 0.999); 0 = off", ge=0.0, lt=1.0
    )

    @checks(mode="after")
    def _check_schedule(self) -> _Schedule:
        at = "train" if isinstance(self, TrainConfig) else "finetune"
        if self.warmup_epochs and self.schedule == "plateau":
            raise ValueError(
                f"{at}.warmup_epochs works with schedule constant or cosine, not plateau; set "
                "warmup_epochs: 0 or pick cosine"
            )
        if self.epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"{at}.warmup_epochs ({self.warmup_epochs:g}) must be shorter than epochs "
                f"({self.epochs})"
            )
        if self.min_learning_rate >= self.learning_rate and self.schedule != "constant":
            raise ValueError(
                f"{at}.min_learning_rate ({self.min_learning_rate:g}) must be below learning_rate "
                f"({self.learning_rate:g})"
            )
        return self


class TrainConfig(_Schedule):
    """Stage 1: the head (and a from-scratch backbone) with a frozen pretrained backbone."""

    epochs: Int = _key(10, "stage-1 epochs", ge=1, le=MAX_EPOCHS)
    batch_size: Int = _key(64, "examples per optimizer step (both stages)", ge=1, le=MAX_BATCH)
    learning_rate: Float32 = _key(1e-3, "stage-1 peak learning rate", gt=0.0, le=MAX_LR)
    optimizer: Literal["adam", "adamw", "sgd"] = _key("adam", "optimizer (both stages)")
    weight_decay: Float32 = _key(0.0, "decoupled (AdamW/SGD) weight decay", ge=0.0, le=MAX_PENALTY)
    label_smoothing: Float32 = _key(0.0, "label smoothing of the loss", ge=0.0, lt=1.0)
    patience: Int | None = _key(
        3, "early-stopping patience in epochs; null = no early stop", ge=1, le=MAX_EPOCHS
    )
    monitor: Literal["val_loss", "val_accuracy"] = _key(
        "val_loss", "what early stopping, plateau and the best model follow"
    )
    feature_cache: Literal["auto", "off"] = _key(
        "auto", "train the head on cached frozen-backbone features when it can"
    )
    # Knowledge distillation (training/distill.py): the teacher's probabilities, once per image.
    teacher: PathText | None = _key(None, "a saved .keras model the student also learns from")
    distill_alpha: Float32 = _key(
        0.5, "share of the loss from the teacher's soft targets", ge=0.0, le=1.0
    )
    distill_temperature: Float32 = _key(4.0, "temperature that softens both", gt=0.0, le=100.0)

    @field_validator("feature_cache", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False; accept it as the "off" it was meant to be.
        return "off" if value is False else value


class FinetuneConfig(_Schedule):
    """Stage 2: unfreeze from a named layer and continue at a small learning rate."""

    epochs: Int = _key(0, "stage-2 epochs; 0 = no stage 2", ge=0, le=MAX_EPOCHS)
    unfreeze_from: LayerPrefix | None = _key(
        None, "layer-name prefix to unfreeze from; null = the backbone's default"
    )
    learning_rate: Float32 = _key(1e-5, "stage-2 peak learning rate", gt=0.0, le=MAX_LR)
    patience: Int | None = _key(
        3, "early-stopping patience in epochs; null = no early stop", ge=1, le=MAX_EPOCHS
    )
    activation_cache: Literal["auto", "off"] = _key(
        "auto", "train the top on cached activations of the frozen bottom when it can"
    )
    # float16 halves the cache (test accuracy against float32: docs/speed.md); auto falls back
    # to float32 when float16 would overflow or flush small activations to zero.
    activation_dtype: Literal["auto", "float16", "float32"] = _key(
        "auto", "how cached stage-2 activations are stored: auto, float16 or float32"
    )
    # timm's --layer-decay: a block n blocks below the head learns at rate x layer_decay**n.
    layer_decay: Float32 = _key(
        1.0,
        "learning-rate factor per block below the head (e.g. 0.8); 1 = one rate",
        gt=0.0,
        le=1.0,
    )

    @field_validator("activation_cache", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1's bare `off`, as for feature_cache

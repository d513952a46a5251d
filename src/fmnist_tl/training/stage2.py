"""What stage 2 trains: the top of the model on cached activations, or the full model on images.

`finetune.activation_cache: auto` trains the top on activations of the frozen bottom (see
activations.py) when that is the same optimisation: one device, nothing random before the cut
(no augmentation but a flip, no dropout in the bottom) and a cache that fits both
`runtime.cache_memory_gb` and the free disk under `output.cache_dir`. A flip keeps the cache
with mirror views: the activations of each image and of its mirror image, one drawn per
example each epoch (data.pipeline.make_dataset). Otherwise stage 2 streams images through the whole
model, and says why in one line.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..cache import load_array, save_array
from ..config import Config
from ..data.pipeline import mirror as mirror_images
from ..models.assembly import find_backbone
from ..models.frozen import FrozenPass
from ..models.inference import infer
from ..records import StageSummary
from .activations import (
    Cut,
    Parts,
    cut_bytes,
    find_cut,
    key_for,
    key_parts,
    random_before_cut,
    split_model,
)
from .runtime import frozen_setup
from .splits import Splits
from .stage import StageInputs

Pooled = tuple[np.ndarray, dict[str, Any]]  # the pool's activations and how they were had


@dataclass
class Plan:
    """How stage 2 runs: on a cache at `cut`, or streaming (with the reason)."""

    cut: Cut
    parts: Parts | None  # None when streaming
    stream_reason: str | None  # why it streams; None when cached
    dtype: str
    mirror: bool = False  # flip augmentation: each image's and its mirror image's activations
    frozen: FrozenPass | None = None  # the pass over `parts.bottom` (models/frozen.py)

    @property
    def cached(self) -> bool:
        return self.stream_reason is None

    def note(self, n_images: int) -> str | None:
        """One line for the terminal: why stage 2 streams, where the cut moved, or what the
        mirror views of `n_images` images cost."""
        if self.stream_reason is not None:
            return f"stage 2 streams images: {self.stream_reason}"
        notes = []
        if self.cut.moved:
            notes.append(
                f"finetune.unfreeze_from {self.cut.requested} sits inside a block; stage 2 "
                f"caches the activations entering {self.cut.layer} (the layers between run "
                "frozen, so the result is the same)"
            )
        if self.mirror:
            assert self.parts is not None
            dtype = "float16" if self.dtype == "auto" else self.dtype
            size = _size(cut_bytes(self.parts, n_images, dtype, mirror=True))
            notes.append(
                "augment.flip: stage 2 caches the activations of each image and of its mirror "
                f"image and draws one per epoch ({size} as {dtype}, twice one view)"
            )
        return "; ".join(notes) or None


@dataclass
class Stage2Inputs(StageInputs):
    plan: Plan | None = None
    cache: str | None = None  # "hit" or "miss" on activations
    cache_seconds: float = 0.0  # computing or loading the activations
    cache_bytes: int = 0
    cache_pass: str | None = None  # the frozen pass that made the activations

    def fill(self, summary: StageSummary) -> None:
        if self.plan is None or not self.plan.cached:
            return
        summary.activation_cache = self.cache
        summary.activation_seconds = round(self.cache_seconds, 3)
        summary.activation_cut = self.plan.cut.layer
        summary.activation_mb = round(self.cache_bytes / 2**20, 1)
        summary.activation_pass = self.cache_pass


def plan_stage2(
    config: Config,
    model: keras.Model,
    n_images: int,
    strategy: Any,
    x_pool: np.ndarray | None = None,
    stage1_bytes: Callable[[int], int] | None = None,
) -> Plan:
    """Decide, before any work, whether stage 2 trains on cached activations.

    `x_pool`: the pool's images; when the free disk looks too small, a cache of them already
    on disk (a repeat, a resume) still counts as fitting. `stage1_bytes(room)`: what stage 1's
    feature cache will write to the same disk first, given the `room` the activations leave
    (asked only when the activations alone would fit): the activations must leave room for it,
    or stage 1 would fill the disk."""
    f = config.finetune
    cut = find_cut(find_backbone(model), str(f.unfreeze_from))
    dtype = f.activation_dtype
    reason = None
    if f.activation_cache == "off":
        reason = "finetune.activation_cache is off"
    elif strategy is not None:
        reason = "runtime.distribute replicates the whole model"
    elif (
        random := random_before_cut(model, cut, mirror_views=config.augment.mirror_views)
    ) is not None:
        what = (
            "augmentation (random shifts or erasing)"
            if random == "augment"
            else f"the random layer {random}"
        )
        reason = f"{what} runs before {cut.layer}, so its activations differ every epoch"
    if reason is not None:
        return Plan(cut, None, reason, dtype)
    parts, mirror = split_model(model, cut), config.augment.mirror_views
    frozen = FrozenPass(
        parts.bottom,
        frozen_setup(config, strategy),
        n_images * (2 if mirror else 1),
        head=parts.top,
        what="the frozen bottom's activations",
    )
    # auto computes in float32 first: budget for that
    size = cut_bytes(parts, n_images, "float32" if dtype == "auto" else dtype, mirror=mirror)
    reason = _memory_reason(size, config)
    disk = None if reason else _disk_reason(size, config, stage1_bytes)
    already = (
        disk is not None and x_pool is not None and _on_disk(frozen, x_pool, cut, mirror, config)
    )
    if disk is not None and not already:  # a cache already on disk needs no room
        reason = disk
    if reason is not None:
        return Plan(cut, None, reason, dtype, mirror)
    return Plan(cut, parts, None, dtype, mirror, frozen)


def _memory_reason(size: int, config: Config) -> str | None:
    """Why an activation cache of `size` bytes is over runtime.cache_memory_gb, or None."""
    if size <= config.runtime.cache_memory_gb * 2**30:
        return None
    return (
        f"its activation cache would take {_size(size)}, above "
        f"runtime.cache_memory_gb ({config.runtime.cache_memory_gb:g})"
    )


def _disk_reason(
    size: int, config: Config, stage1_bytes: Callable[[int], int] | None
) -> str | None:
    """Why an activation cache of `size` bytes does not fit the free disk under
    output.cache_dir beside stage 1's features (written there first), or None."""
    cache_dir = Path(config.output.cache_dir)
    free = free_bytes(cache_dir)
    first = stage1_bytes(free - size) if stage1_bytes is not None and size <= free else 0
    if size + first <= free:
        return None
    also = f" beside stage 1's {_size(first)} of features" if first else ""
    return (
        f"its activation cache would take {_size(size)} on disk{also}, more than the "
        f"{_size(free)} free in {cache_dir} (output.cache_dir)"
    )


def _on_disk(
    frozen: FrozenPass, x_pool: np.ndarray, cut: Cut, mirror: bool, config: Config
) -> bool:
    """Whether a verified cache of these activations, made by the pass asked for, is already
    on disk."""
    key = key_parts(frozen.model, x_pool, cut, mirror=mirror)
    dtype, cache_dir = config.finetune.activation_dtype, Path(config.output.cache_dir)
    return _stored(key, len(x_pool), cache_dir, dtype, frozen.intended) is not None


def _stored(
    key: dict[str, Any], n_images: int, cache_dir: Path, dtype: str, made_by: str
) -> tuple[np.ndarray, Path] | None:
    """The verified cache of `key_parts` `key` made by the pass `made_by`, in any dtype `dtype`
    allows, memory-mapped (stage 2 reads each batch's rows: pipeline.Rows), and its path; None
    when there is none."""
    for stored in ("float16", "float32") if dtype == "auto" else (dtype,):
        path = _cache_path(cache_dir, key, stored, made_by)
        if (acts := load_array(path, n_images, mmap=True)) is not None:
            return acts, path
    return None


def _cache_path(cache_dir: Path, key: dict[str, Any], dtype: str, made_by: str) -> Path:
    return Path(cache_dir) / f"activations-{key_for(key, dtype, made_by)}.npy"


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (its nearest existing parent, if it is not
    made yet)."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.is_dir():
            return shutil.disk_usage(candidate).free
    return 0


def pool_activations(plan: Plan, x_pool: np.ndarray, cache_dir: Path) -> Pooled:
    """Activations at the cut for every pool image: from the verified cache, or computed by
    the plan's frozen pass (looked up under the pass it asks for, then, when its check sends
    it back to Keras, under Keras's)."""
    assert plan.parts is not None and plan.frozen is not None
    t0 = time.perf_counter()
    frozen, n = plan.frozen, len(x_pool)
    parts = key_parts(plan.parts.bottom, x_pool, plan.cut, mirror=plan.mirror)  # hashed once
    found = _stored(parts, n, cache_dir, plan.dtype, made_by := frozen.intended)
    if found is None and frozen.build(x_pool) != made_by:
        found = _stored(parts, n, cache_dir, plan.dtype, made_by := frozen.name)
    if found is not None:
        acts, path = found
        return acts, _cache_info("hit", path, acts, t0, made_by)
    acts = frozen(x_pool, label="extracting activations")
    if plan.mirror:  # axis 1: the image's view, its mirror image's
        label = "extracting activations (mirror images)"
        mirrored = frozen(mirror_images(x_pool), label=label)
        acts = np.stack([acts, mirrored], axis=1)
        del mirrored
    acts, dtype = _narrow(acts, plan.dtype)
    path = _cache_path(cache_dir, parts, dtype, made_by)
    save_array(path, acts)
    return acts, _cache_info("miss", path, acts, t0, made_by)


def _cache_info(
    cache: str, path: Path, acts: np.ndarray, t0: float, made_by: str
) -> dict[str, Any]:
    """What metrics.json records of the cache; the key is the file's (`_cache_path`)."""
    return {
        "cache": cache,
        "path": str(path),
        "seconds": time.perf_counter() - t0,
        "bytes": int(acts.nbytes),
        "key": path.stem.removeprefix("activations-"),
        "pass": made_by,
    }


def _narrow(acts: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """`acts` in the configured dtype; "auto" keeps float32 when float16 would overflow or
    flush more than 0.1% of the nonzero activations to zero (a random backbone's are ~1e-12,
    and Adam moves weights by as much for a tiny gradient as for a large one)."""
    if dtype == "float32":
        return acts, dtype
    narrow = acts.astype(np.float16)
    if dtype == "float16":
        return narrow, dtype
    nonzero = np.count_nonzero(acts)
    if np.isfinite(narrow).all() and nonzero - np.count_nonzero(narrow) <= 1e-3 * nonzero:
        return narrow, "float16"
    return acts, "float32"


def stage2_inputs(
    config: Config,
    model: keras.Model,
    splits: Splits,
    plan: Plan,
    backbone_pass: BackbonePass | None = None,
) -> Stage2Inputs:
    """The model and data stage 2 fits. `backbone_pass`: stage 1's pass over the same frozen
    layers, when it already gave the activations; otherwise they come from the cache or are
    computed here, and count in the stage's time."""
    if not plan.cached:
        return Stage2Inputs(model, splits.images(), False, plan=plan)
    assert plan.parts is not None
    t0 = time.perf_counter()
    pre = backbone_pass.activations if backbone_pass is not None else None
    acts, info = pre or pool_activations(plan, splits.x_pool, Path(config.output.cache_dir))
    return Stage2Inputs(
        plan.parts.top,
        splits.of_pool(acts, config, views=plan.mirror),
        True,
        seconds=time.perf_counter() - t0,
        counts_pass=pre is None,
        plan=plan,
        cache=info["cache"],
        cache_seconds=info["seconds"],
        cache_bytes=info["bytes"],
        cache_pass=info["pass"],
    )


@dataclass
class BackbonePass:
    """One pass over the frozen backbone for both stages, when stage 2 trains on its cache:
    the activations at stage 2's cut (cached), and stage 1's pooled features computed from
    them. Stage 1 calls `features` on a feature-cache miss and hands the pass to stage 2,
    which takes its `activations` (None when stage 1 never needed it)."""

    plan: Plan
    x_pool: np.ndarray
    cache_dir: Path
    activations: Pooled | None = None

    @classmethod
    def for_plan(
        cls, plan: Plan | None, x_pool: np.ndarray, cache_dir: Path
    ) -> BackbonePass | None:
        """The pass for a stage-2 plan that caches; None when stage 2 streams (or is none)."""
        if plan is None or plan.parts is None:
            return None
        return cls(plan, x_pool, cache_dir)

    @property
    def frozen(self) -> FrozenPass:
        """The pass over the frozen bottom: it makes the activations, so it keys the features."""
        assert self.plan.frozen is not None
        return self.plan.frozen

    def features(self) -> tuple[np.ndarray, str]:
        """Stage 1's pooled features, from the activations at the cut (kept for stage 2), and
        the pass that made those activations."""
        assert self.plan.parts is not None
        self.activations = pool_activations(self.plan, self.x_pool, self.cache_dir)
        (acts, info), top_features = self.activations, self.plan.parts.features
        if not self.plan.mirror:
            return infer(top_features, acts, label="extracting features"), info["pass"]
        # The features of both views, on axis 1, as stage1.py keeps them for a flip.
        labels = ("extracting features", "extracting features (mirror images)")
        views = [infer(top_features, acts[:, v], label=labels[v]) for v in (0, 1)]
        return np.stack(views, axis=1), info["pass"]

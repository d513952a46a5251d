"""Path checks that need no TensorFlow, with one wording for the CLI and the API.

The CLI runs them before importing TensorFlow (about 3.5 s), so a mistyped model path or an
output folder that cannot be written fails at once; the API runs the same functions, so the
two say the same thing.
"""

from __future__ import annotations

import errno
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import DataError, MissingFileError, os_failure, short_path
from .layout import published_files


def check_model_file(path: str | os.PathLike[str], key: str | None = None) -> Path:
    """`path` is a file that looks like a .keras archive (a zip), or MissingFileError (its
    message starting with `key`, the config key that named the model, when there is one)."""
    try:
        return _check_model_file(Path(path))
    except MissingFileError as exc:
        if key is None:
            raise
        raise MissingFileError(f"{key}: {exc}") from None


def _check_model_file(p: Path) -> Path:
    if not p.is_file():
        what = "is a folder, not a model file" if p.is_dir() else "model file not found"
        raise MissingFileError(
            f"{short_path(p)}: {what}; train one first (`fmnist train CONFIG`) "
            "or pass the path to a .keras file"
        )
    if not os.access(p, os.R_OK):  # is_zipfile would call an unreadable file "not a zip"
        raise MissingFileError(f"{short_path(p)}: permission denied; fix its permissions")
    try:
        is_zip = zipfile.is_zipfile(p)
    except OSError as exc:
        raise os_failure(exc, p) from None
    if not is_zip:
        raise MissingFileError(
            f"{short_path(p)}: not a Keras model file (.keras zip archive expected)"
        )
    try:
        with zipfile.ZipFile(p) as archive:
            has_config = "config.json" in archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise MissingFileError(f"{short_path(p)}: unreadable zip archive ({exc})") from None
    if not has_config:
        raise MissingFileError(
            f"{short_path(p)}: not a Keras model file (no config.json in the archive); pass "
            "a .keras file saved by Keras or `fmnist train`"
        )
    return p


def expand_path(path: str | os.PathLike[str], key: str) -> Path:
    """`path` with a leading ~ or ~user expanded, or one exit-3 line naming `key`.

    Path.expanduser raises RuntimeError for an unknown user (~nosuchuser/x) or no home.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise MissingFileError(
            f"{key}: {short_path(path)}: cannot expand ~ (no such user, or no home folder); "
            f"write {key} in full"
        ) from None


def check_data_dir(path: str | os.PathLike[str] | None, key: str = "data.dir") -> Path | None:
    """data.dir (or --data-dir), when given, is a folder: else DataError, before any import."""
    if path is None:
        return None
    d = expand_path(path, key)
    if not d.is_dir():
        raise DataError(f"{short_path(d)}: {key} does not exist or is not a folder")
    return d


def check_output_file(path: str | os.PathLike[str] | None, what: str = "output file") -> None:
    """A file about to be written: not a folder, and its folder can be made and written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir() or os.fspath(path).endswith(os.sep):
        raise MissingFileError(
            f"{short_path(p)}: is a folder; give a file path for the {what}, "
            f"e.g. {short_path(p / 'evaluation.json')}"
        )
    why = unwritable(p.parent)
    if why is not None:
        raise MissingFileError(
            f"{short_path(p)}: cannot write here: {why}; choose a writable folder for the {what}"
        )


def report_paths(out_json: str | os.PathLike[str]) -> list[Path]:
    """The files an evaluation report writes: its JSON and, beside it, its two pictures."""
    p = Path(out_json)
    stem = p.parent / p.stem
    return [p, Path(f"{stem}_confusion.png"), Path(f"{stem}_misclassified.png")]


def check_report_outputs(out_json: str | os.PathLike[str] | None, option: str = "--output") -> None:
    """Every file of a report can be written, before any is: no half-written report."""
    if out_json is None:
        return
    check_output_file(out_json, "JSON report")
    for picture in report_paths(out_json)[1:]:
        check_not_folder(picture, option)


def check_not_folder(path: Path, option: str) -> None:
    """A file about to be replaced is not a folder (os.replace cannot put a file there)."""
    if path.is_dir():
        raise MissingFileError(
            f"{short_path(path)}: is a folder where fmnist writes a file; remove that folder "
            f"or choose another {option}"
        )


def check_writable_dir(path: str | os.PathLike[str], key: str) -> None:
    """`path` is, or can be made as, a folder this process may write to, or MissingFileError
    naming `key` (the config key or option that chose the path)."""
    why = unwritable(path)
    if why is not None:
        raise MissingFileError(f"{key}: {why}; choose another {key}")


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be made or written as a folder, or None. Creates nothing.

    Walks up to the nearest existing part: a file there (where a folder should be), a name or
    path too long, or a folder without write permission (never for root) is the reason.
    """
    try:
        p = Path(path).expanduser().absolute()
    except RuntimeError:  # ~nosuchuser/x
        return f"{short_path(path)}: cannot expand ~ (no such user, or no home folder)"
    try:
        _check_lengths(p)
        existing = p
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:
        return f"{short_path(p)}: {exc.strerror or exc}, use a shorter path"
    if not existing.is_dir():
        under = "" if existing == p else f" (on the way to {short_path(p)})"
        return f"{short_path(existing)} is a file where a folder should be{under}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{short_path(existing)}: permission denied"
    return None


def check_run_outputs(output: Any, *, publish: bool | None = None) -> None:
    """output.dir, output.log_dir and output.cache_dir (the config's `output` section) can be
    written and, when the run publishes (default output.update_best), its best.* and latest.*
    are not folders.

    Before any data is loaded or run folder made: TensorBoard, the feature cache or publish
    would otherwise fail only once training has started or ended, in their own words.
    """
    for key in ("dir", "log_dir", "cache_dir"):
        check_writable_dir(getattr(output, key), f"output.{key}")
    if output.update_best if publish is None else publish:
        root = expand_path(output.dir, "output.dir")
        for target in published_files(root):
            check_not_folder(target, "output.dir")


def fresh_folder(root: Path, name: str, what: str = "run") -> Path:
    """A new folder <root>/<name>-<timestamp>[-k] for a run, a repeat group, a study or a tune.

    `mkdir` without exist_ok is the claim, so two processes never share a folder.
    """
    base = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_failure(exc, root, key="output.dir") from None
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise os_failure(exc, folder, key="output.dir") from None
    raise MissingFileError(f"output.dir: too many {what}s named {base} in {root}")


def _check_lengths(p: Path) -> None:
    """ENAMETOOLONG before anything is created: a part over NAME_MAX or the whole over PATH_MAX."""
    anchor = next((q for q in [p, *p.parents] if q.exists()), Path(p.anchor))
    name_max = os.pathconf(anchor, "PC_NAME_MAX")
    path_max = os.pathconf(anchor, "PC_PATH_MAX")
    too_long = len(os.fsencode(p)) >= path_max or any(
        len(os.fsencode(part)) > name_max for part in p.parts
    )
    if too_long:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), os.fspath(p))

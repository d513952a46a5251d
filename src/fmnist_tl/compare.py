"""Side-by-side comparison of runs and repeat groups: a Markdown table and a bar chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import atomic
from .report import collect_runs, compare_markdown, plot_comparison


def compare_runs(
    patterns: list[str] | None = None,
    *,
    root: str | os.PathLike[str] = "saved_models",
    out_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Collect runs (best test accuracy first), write comparison.md and comparison.png.

    Args:
        patterns: run folders, run ids under `root` or glob patterns; None = every run in `root`.
        root: the folder holding the runs (output.dir).
        out_dir: where the two files go; None = `root`.

    Returns {"rows", "markdown", "markdown_path", "plot_path"}; a repeat group is one row.
    """
    rows = collect_runs(patterns or None, root)
    out = Path(out_dir) if out_dir is not None else Path(root)
    markdown = compare_markdown(rows)
    md_path, png_path = out / "comparison.md", out / "comparison.png"
    atomic.write_text(md_path, markdown)
    plot_comparison(rows, png_path)
    return {
        "rows": rows,
        "markdown": markdown,
        "markdown_path": str(md_path),
        "plot_path": str(png_path),
    }

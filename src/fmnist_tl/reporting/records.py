"""Published results, backed by records in the repository: results/.

A run folder holds models and caches and stays on the machine that trained it; what a
published number needs travels as a record: each run's config.yaml, metrics.json and
history.csv (a few kB), and a repeat group's repeat.json, copied under results/<name>/ by
`add_record`. `results/rows.yaml` names the rows of a published table (which record, how to
describe it); `results_table` renders that table from the records alone, and `update_block`
puts it into a Markdown file between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, so
the README's table is generated, and a test checks it still is.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import atomic
from ..errors import ConfigError, MissingFileError, short_path
from ..layout import CONFIG, HISTORY, METRICS, REPEAT_JSON
from ..paths import read_text
from ..records import RunMetrics
from .runs import members
from .tables import markdown_row, plus_minus

RECORD_FILES = (CONFIG, METRICS, HISTORY)
ROWS = "rows.yaml"


def add_record(source: Path, dest: Path) -> list[Path]:
    """Copy a run's (or a repeat group's and its members') record files into `dest`, or an
    ensemble's evaluation report (its JSON, which names its members) to `dest`."""
    source = Path(source)
    if source.is_file() and source.suffix == ".json":
        return [_add_report(source, dest)]
    if not (source / METRICS).is_file() and not (source / REPEAT_JSON).is_file():
        raise MissingFileError(
            f"{short_path(source)}: not a run or a repeat group (no {METRICS} or {REPEAT_JSON})"
        )
    if dest.exists():
        raise ConfigError(f"{short_path(dest)} exists already; choose another name or remove it")
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    try:
        runs = members(source, source.parent)
        if (source / REPEAT_JSON).is_file():
            written.append(_copy(source / REPEAT_JSON, staging / REPEAT_JSON))
        for run in runs:
            folder = staging / run.name if (source / REPEAT_JSON).is_file() else staging
            for name in RECORD_FILES:
                if (run / name).is_file():
                    written.append(_copy(run / name, folder / name))
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / p.relative_to(staging) for p in written]


def _add_report(source: Path, dest: Path) -> Path:
    try:
        members = atomic.loads_json(read_text(source)).get("members")
    except (OSError, ValueError, AttributeError) as exc:
        raise MissingFileError(f"{short_path(source)}: unreadable ({exc})") from None
    if not members:
        raise MissingFileError(f"{short_path(source)}: not an ensemble's report (no members)")
    if dest.exists():
        raise ConfigError(f"{short_path(dest)} exists already; choose another name or remove it")
    return _copy(source, dest)


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic.copy_file(src, dst)
    return dst


@dataclass
class Row:
    """One published row: what it trains, in words, and its record's figures."""

    spec: dict[str, Any]
    runs: list[RunMetrics]

    @property
    def accuracy(self) -> str:
        acc = [m.test.accuracy for m in self.runs]
        text = _mean_std(acc)
        flip = [m.test.accuracy_without_flip for m in self.runs]
        if all(f is not None for f in flip):
            text += f"; without the flip {_mean_std([float(f) for f in flip if f is not None])}"
        return f"{text} ({len(self.runs)})" if len(self.runs) > 1 else f"{text} (1 run)"

    def seconds(self, kind: str) -> str:
        values = [m.wall_time_s for m in self.runs] if kind == "wall" else run_cpu(self.runs)
        return ", ".join("-" if v is None else f"{v:,.0f}" for v in values)


def run_cpu(runs: list[RunMetrics]) -> list[float | None]:
    """Each run's own CPU seconds: timings.run_cpu_s, or for a record written before it, the
    process's cpu_s less that of the run before it in the same process (a --repeat trains its
    runs one after another in one process: same start, process_s apart)."""
    cpu: dict[int, float | None] = {}
    previous: RunMetrics | None = None
    for m in sorted(runs, key=lambda r: r.created or ""):
        own = m.timings.get("run_cpu_s")
        if own is None and m.timings.get("cpu_s") is not None:
            own = m.timings["cpu_s"]
            if previous is not None and _same_process(previous, m):
                own -= previous.timings["cpu_s"]
        cpu[id(m)] = own
        previous = m
    return [cpu[id(m)] for m in runs]


def _same_process(a: RunMetrics, b: RunMetrics) -> bool:
    starts = [_process_start(m) for m in (a, b)]
    return None not in starts and abs(starts[0] - starts[1]) < 2.0  # type: ignore[operator]


def _process_start(m: RunMetrics) -> float | None:
    from datetime import datetime

    if not m.created or m.timings.get("process_s") is None or m.timings.get("cpu_s") is None:
        return None
    return datetime.fromisoformat(m.created).timestamp() - m.timings["process_s"]


def _mean_std(values: list[float]) -> str:
    from .tables import mean_std

    mean, std = mean_std(values)
    return plus_minus(mean, std if len(values) > 1 else None)


HEADERS = {"trains": "what it trains", "reference": "the seed projects reported"}


def _table(root: Path, table: str) -> dict[str, Any]:
    """A table of rows.yaml: its `rows`, and `headers` renaming the words columns."""
    try:
        spec = yaml.safe_load(read_text(root / ROWS)) or {}
    except FileNotFoundError:
        raise MissingFileError(
            f"{short_path(root / ROWS)} not found: run from the repository root, or pass "
            "--root with the records folder"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise MissingFileError(f"{short_path(root / ROWS)}: unreadable ({exc})") from None
    except RecursionError:
        raise MissingFileError(f"{short_path(root / ROWS)}: nested too deeply to read") from None
    found = (spec.get("tables") or {}).get(table)
    if not found or not found.get("rows"):
        raise ConfigError(f"{short_path(root / ROWS)}: no table {table!r} with rows")
    return {"rows": found["rows"], "headers": {**HEADERS, **(found.get("headers") or {})}}


def _table_spec(root: Path, table: str) -> list[dict[str, Any]]:
    return _table(root, table)["rows"]


def load_rows(root: Path, table: str) -> list[Row]:
    """The rows of `table` in root/rows.yaml, each with its record's runs (in seed order)."""
    out = []
    for row in _table_spec(root, table):
        folder = root / row["record"]
        runs = [RunMetrics.read(run / METRICS) for run in members(folder, folder.parent)]
        out.append(Row(row, sorted(runs, key=lambda m: m.seed or 0)))
    return out


def results_table(root: Path, table: str) -> str:
    """The Markdown table of `table`, from the records alone, with the machine it ran on."""
    if all("ensemble" in row for row in _table_spec(root, table)):
        return ensemble_table(root, table)
    rows, words = load_rows(root, table), _table(root, table)["headers"]
    header = ["config", words["trains"], "test accuracy, mean ± std (runs)"]
    header += ["wall time per run (s)", "CPU time per run (s)", words["reference"]]
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"`{r.spec['config']}`", r.spec.get("trains", ""), r.accuracy]
        cells += [r.seconds("wall"), r.seconds("cpu"), r.spec.get("reference", "")]
        lines.append(markdown_row(cells))
    machines = sorted({_machine(m) for r in rows for m in r.runs})
    dates = sorted({(m.created or "")[:10] for r in rows for m in r.runs})
    lines += ["", f"Measured on {'; '.join(machines)}, {dates[0]} to {dates[-1]}."]
    return "\n".join(lines) + "\n"


def _machine(m: RunMetrics) -> str:
    mach, tf = m.machine, m.versions.get("tensorflow", "?")
    if not mach:
        return f"an unrecorded machine (TensorFlow {tf})"
    return f"{mach.get('cpu')}, {mach.get('cores')} cores, TensorFlow {mach.get('tensorflow', tf)}"


def update_block(document: Path, table: str, text: str) -> bool:
    """Put `text` between the document's results markers for `table`; whether it changed."""
    start, end = f"<!-- results:{table} -->", f"<!-- /results:{table} -->"
    content = read_text(document)
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise ConfigError(f"{short_path(document)}: no {start} ... {end} block to fill")
    updated = pattern.sub(lambda _: f"{start}\n{text}{end}", content)
    if updated != content:
        atomic.write_text(document, updated)
    return updated != content


def block(document: Path, table: str) -> str:
    """What the document holds between its results markers for `table`."""
    start, end = f"<!-- results:{table} -->", f"<!-- /results:{table} -->"
    content = read_text(document)
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), content, re.S)
    return match.group(1) if match else ""


def ensemble_table(root: Path, table: str) -> str:
    """An ensembles table: each ensemble's test accuracy (its report, recorded), its members'
    alone, and what training them cost (their runs' records, found by run id)."""
    runs = {m.run_id: m for m in map(RunMetrics.read, root.rglob(METRICS))}
    header = ["ensemble", "members", "test accuracy", "each member alone", "gain over the best"]
    header += ["training: wall s", "training: CPU s"]
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for row in _table_spec(root, table):
        try:
            report = atomic.loads_json(read_text(root / row["ensemble"]))
        except (OSError, ValueError) as exc:
            path = short_path(root / row["ensemble"])
            raise MissingFileError(f"{path}: unreadable ({exc})") from None
        alone = [m["accuracy"] for m in report["members"]]
        ids = [Path(m["model"]).parent.name for m in report["members"]]
        trained = [runs.get(i) for i in ids]
        known = [m for m in trained if m is not None]
        cost = [sum(m.wall_time_s for m in known), sum(c or 0 for c in run_cpu(known))]
        missing = "" if len(known) == len(ids) else f" ({len(ids) - len(known)} not recorded)"
        cells = [row["name"], len(alone), f"{report['accuracy']:.4f}"]
        cells += [", ".join(f"{a:.4f}" for a in alone), f"{report['accuracy'] - max(alone):+.4f}"]
        cells += [f"{cost[0]:,.0f}{missing}", f"{cost[1]:,.0f}{missing}"]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n"

"""Published numbers come from records: results/ holds each run's config.yaml, metrics.json and
history.csv (never a model), `fmnist results table` renders a table from them alone, and the
README's table is that rendering (a doctored record no longer matches it)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SMOKE, cli_fails, outputs
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.experiments.repeat import run_repeated
from fmnist_tl.reporting import records
from fmnist_tl.reporting.tables import mean_std

runner = CliRunner()
ROWS = """tables:
  demo:
    headers: {reference: the point}
    rows:
    - record: smoke-x2
      config: smoke.yaml
      trains: the smoke CNN
      reference: "-"
  ensembles:
    rows:
    - ensemble: ensembles/two.json
      name: the smoke CNN, 2 seeds
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory, synthetic_dir) -> dict:
    """Two seeds of the smoke config, their group recorded under results/smoke-x2."""
    work = tmp_path_factory.mktemp("published")
    group = run_repeated(load_config(SMOKE, outputs(work, synthetic_dir)), [42, 43])
    root = work / "results"
    result = runner.invoke(app, ["results", "add", str(group.group_dir), "--as", "smoke-x2",
                                 "--root", str(root)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (root / "rows.yaml").write_text(ROWS)
    return {"root": root, "group": group}


def test_a_record_holds_the_small_files_only(published):
    record = published["root"] / "smoke-x2"
    names = sorted(str(p.relative_to(record)) for p in record.rglob("*") if p.is_file())
    runs = [r.run_id for r in published["group"].per_run]
    expected = ["repeat.json"] + [f"{r}/{f}" for r in runs for f in records.RECORD_FILES]
    assert names == sorted(expected)
    assert sum(p.stat().st_size for p in record.rglob("*") if p.is_file()) < 100_000


def test_the_table_is_the_records_and_catches_a_doctored_one(published, tmp_path):
    root = published["root"]
    text = records.results_table(root, "demo")
    accuracies = [r.accuracy for r in published["group"].per_run]
    mean, std = mean_std(accuracies)
    assert f"{mean:.4f} ± {std:.4f} (2)" in text
    assert text.splitlines()[0].endswith("| the point |")  # a renamed words column
    doc = tmp_path / "README.md"
    doc.write_text("intro\n<!-- results:demo -->\nold\n<!-- /results:demo -->\nafter\n")
    assert records.update_block(doc, "demo", text)
    assert records.block(doc, "demo") == text
    assert doc.read_text().startswith("intro\n") and doc.read_text().endswith("after\n")
    assert not records.update_block(doc, "demo", text)  # generated twice, the same
    metrics = next((root / "smoke-x2").glob("*/metrics.json"))
    original = metrics.read_text()
    raw = json.loads(original)
    raw["test"]["accuracy"] = 0.999
    metrics.write_text(json.dumps(raw))
    try:
        assert records.results_table(root, "demo") != records.block(doc, "demo")
    finally:
        metrics.write_text(original)


def test_cpu_time_per_run_is_each_runs_own(published):
    rows = records.load_rows(published["root"], "demo")
    cpu = records.run_cpu(rows[0].runs)
    assert all(c is not None and c > 0 for c in cpu)
    process = [m.timings["cpu_s"] for m in rows[0].runs]
    assert sum(cpu) <= max(process) + 1e-6  # the second run's own, not the process's total


def test_an_ensemble_table_from_its_report_and_its_members_records(published, synthetic_dir):
    from fmnist_tl.evaluation.report import evaluate

    root, group = published["root"], published["group"]
    models = [group.group_dir.parent / r.run_id / "best.keras" for r in group.per_run]
    report = evaluate(models, data_dir=str(synthetic_dir))
    result = runner.invoke(app, ["results", "add", report["json_path"], "--as",
                                 "ensembles/two.json", "--root", str(root)])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = records.results_table(root, "ensembles")
    walls = sum(r.wall_time_s for r in group.per_run)
    row = text.splitlines()[2]
    assert f"| the smoke CNN, 2 seeds | 2 | {report['accuracy']:.4f} |" in row
    assert f"| {walls:,.0f} |" in row
    alone = ", ".join(f"{m['accuracy']:.4f}" for m in report["members"])
    assert alone in row


def test_bad_records_are_one_line(published, tmp_path):
    root = str(published["root"])
    group = str(published["group"].group_dir)
    cli_fails(["results", "add", group, "--as", "smoke-x2", "--root", root], 2, "exists already")
    cli_fails(["results", "add", str(tmp_path), "--as", "x", "--root", root], 3, "not a run")
    cli_fails(["results", "table", "nope", "--root", root], 2, "no table 'nope'")
    empty = str(tmp_path / "empty")  # no rows.yaml: where to look, said
    cli_fails(["results", "table", "transfer", "--root", empty], 3, "rows.yaml not found", "--root")


def test_every_published_table_is_generated_from_the_committed_records():
    """Each `<!-- results:NAME -->` block of README.md and docs/ is `fmnist results table NAME`
    over results/, as it stands."""
    import re

    documents = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    found = 0
    for doc in documents:
        for name in re.findall(r"<!-- results:([\w-]+) -->", doc.read_text()):
            assert records.block(doc, name) == records.results_table(REPO / "results", name), (
                f"{doc.name}: table {name} differs from its records; regenerate it with "
                f"`fmnist results table {name} --update {doc.relative_to(REPO)}`"
            )
            found += 1
    assert found >= 2  # the README's quickstart and transfer tables at least


def test_committed_records_hold_no_models():
    files = [p for p in (REPO / "results").rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix in (".keras", ".h5", ".npy", ".npz")]
    assert all(p.stat().st_size < 200_000 for p in files), "records are a few kB each"

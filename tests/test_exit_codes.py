"""README's "## Exit codes" table and the code agree: every code the CLI can return is listed,
and every listed code is one the code returns."""

from __future__ import annotations

import inspect
import re

from conftest import REPO
from typer.testing import CliRunner

from fmnist_tl import errors
from fmnist_tl.cli import app

SRC = REPO / "src" / "fmnist_tl"


def readme_table() -> dict[int, str]:
    """code -> meaning, from the first table under README.md's "## Exit codes"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            assert int(cells[0]) not in rows, f"code {cells[0]} listed twice"
            rows[int(cells[0])] = cells[1]
    assert rows, "no table rows under ## Exit codes"
    return rows


def literal_exit_codes() -> set[int]:
    """Codes written as numbers anywhere in src/: typer.Exit(N), sys.exit(N), exit_code = N."""
    found = set()
    pattern = re.compile(r"(?:typer\.Exit|SystemExit|sys\.exit)\((\d+)\)|exit_code = (\d+)")
    for path in SRC.rglob("*.py"):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            found.add(int(m.group(1) or m.group(2)))
    return found


def test_readme_lists_exactly_the_codes_the_code_returns():
    table = readme_table()
    codes = set(errors.exit_codes()) | literal_exit_codes()
    assert set(table) == codes, (sorted(table), sorted(codes))
    assert set(table) >= {0, 1, 2, 3, 4, 130}


def test_each_failure_class_says_its_code_and_the_readme_row_fits():
    table = readme_table()
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.FmnistError)
    ]
    assert {c.__name__ for c in classes} >= {
        "ConfigError",
        "DataError",
        "MissingFileError",
        "TrainingDiverged",
        "Interrupted",
    }
    for cls in classes:
        doc = " ".join((cls.__doc__ or "").split())
        assert f"(exit {cls.exit_code})" in doc, (cls.__name__, doc)
        assert cls.exit_code in table, cls.__name__
    # The words a user looks for are in the row of the code they get.
    for code, words in {
        1: ["unexpected"],
        2: ["config", "usage"],
        3: ["data", "model"],
        4: ["diverged"],
        130: ["interrupted", "--resume"],
    }.items():
        for word in words:
            assert word in table[code].lower(), (code, word, table[code])


def test_os_failures_map_to_the_documented_code():
    """An OSError reaching the CLI exits OS_FAILURE with "PATH: reason; what to do"."""
    assert errors.OS_FAILURE in readme_table()
    exc = errors.os_failure(OSError(28, "No space left on device", "/data/run/best.keras"))
    assert isinstance(exc, errors.MissingFileError) and exc.exit_code == errors.OS_FAILURE
    assert str(exc) == (
        "/data/run/best.keras: No space left on device; free space on that disk or write "
        "somewhere else"
    )
    long = "/x" * 3000
    assert len(errors.shorten_paths(f"{long}: too long")) < 2 * errors.PATH_SHOWN


def test_usage_errors_from_the_command_line_parser_use_code_2():
    result = CliRunner().invoke(app, ["train", "--no-such-option"])
    assert result.exit_code == 2 and 2 in readme_table()


def test_handle_errors_has_no_code_the_table_lacks():
    """handle_errors maps by class; the codes it names (typer.Exit(OS_FAILURE)) are errors.py
    constants, and in the table too. Wherever it lives (cli/common.py now), src/ is searched."""
    source = "".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    named = set(re.findall(r"typer\.Exit\(([A-Z_]+)\)", source))
    assert "OS_FAILURE" in named  # the OSError branch: found, so this test checks something
    values = {getattr(errors, name) for name in named}
    assert values <= set(readme_table()), values

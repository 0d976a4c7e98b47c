"""The notebooks run from top to bottom without an error, and are committed without outputs."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
# A `!command` cell does not fail when its command does: look for what our commands and the shell print then.
_SHELL_FAILURE = re.compile(r"^\S+: (?:unexpected )?error: .*|.*: (?:command )?not found$", re.MULTILINE)


def shell_failures(notebook) -> list[str]:
    """The error lines printed by the ``!command`` lines of the executed notebook's cells."""
    failures = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not re.search(r"^\s*!", cell.source, re.MULTILINE):
            continue
        text = "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")
        text = _TERMINAL_COLOURS.sub("", text).replace("\r\n", "\n")  # `!` output comes through a terminal
        failures += [f"cell {number}: {line}" for line in _SHELL_FAILURE.findall(text)]
    return failures


def test_the_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} >= {"database_queries.ipynb", "jsonb_queries.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # The notebooks make their demo database in this folder instead of a temporary one of their own.
    monkeypatch.setenv("IMAGING_DB_NOTEBOOK_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(path, as_version=4)
    # Kernel "python3" is started with this interpreter (jupyter_client replaces "python" with sys.executable).
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        # The message holds the failing cell's source and traceback, which IPython colours.
        pytest.fail(f"{path.name}: a cell failed:\n{_TERMINAL_COLOURS.sub('', str(exc))}", pytrace=False)
    failures = shell_failures(notebook)
    assert not failures, f"{path.name}: a shell command failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {number} has outputs; strip them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {number} has an execution count"
        assert "attachments" not in cell, f"{path.name}: cell {number} has attachments"

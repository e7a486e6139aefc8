"""examples/classroom.ipynb runs headless (no browser: kernel students) against a server."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ..server_process import ServerProcess

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


@pytest.mark.timeout(240)
def test_the_classroom_notebook_runs_a_class(server: ServerProcess) -> None:
    notebook = nbformat.read(EXAMPLES / "classroom.ipynb", as_version=4)
    env = {**server.env, "PYTHONPATH": os.getcwd()}
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(server.root / "notebooks")}}
                   ).execute(env=env)
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    results = [output["data"]["text/plain"] for output in outputs
               if output.output_type == "execute_result"]
    assert "['ada', 'grace', 'alan']" in results
    assert "[('grace', 1.0), ('ada', 0.0)]" in results or any(
        r.startswith("[('grace'") for r in results)
    assert any("53105" in r and "locked by its moderator" in r for r in results)
    assert "['ada', 'alan', 'grace']" in results  # all back after recall
    monitored = next(r for r in results if r.startswith("(True, ["))
    assert ast.literal_eval(monitored)[1] == ["ada", "alan", "grace"]
    hands, refused, history = ast.literal_eval(results[-1])
    assert hands == ["ada"] and refused == 53105 and history == 2

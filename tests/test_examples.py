"""The example notebooks run headless against a real server."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .server_process import ServerProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_notebook_runs_against_the_server(server: ServerProcess) -> None:
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    env = {**server.env, "PYTHONPATH": os.getcwd()}
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute(env=env)
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert not [output for output in outputs if output.output_type == "error"]
    final = notebook.cells[-1].outputs[0]["data"]["text/plain"]
    assert final.startswith("('completed', ")

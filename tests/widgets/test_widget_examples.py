"""examples/python_participant.ipynb runs headless (no browser, so no camera) against a server."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ..server_process import ServerProcess

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"

pytestmark = pytest.mark.timeout(180)


def test_python_participant_notebook_processes_a_test_pattern(server: ServerProcess) -> None:
    notebook = nbformat.read(EXAMPLES / "python_participant.ipynb", as_version=4)
    env = {**server.env, "PYTHONPATH": os.getcwd()}
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute(env=env)
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert not [output for output in outputs if output.output_type == "error"]
    # Without a browser the processor follows the test pattern, and sees real frames.
    seen = next(
        output["data"]["text/plain"] for output in outputs
        if output.output_type == "execute_result"
        and output["data"]["text/plain"].startswith("(['test-pattern']")
    )
    followed, shape, frame_mean, edges_mean = ast.literal_eval(seen)
    assert followed == ["test-pattern"] and shape == (240, 320, 3)
    assert frame_mean > 30 and edges_mean > 0

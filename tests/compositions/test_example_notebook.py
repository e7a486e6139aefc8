"""examples/recorded_lecture.ipynb runs headless in a real kernel against a real server: a
recorded room, a lecture, and compose() with its progress bar and an inline player."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ..server_process import ServerProcess
from .test_compositions_rest import video_config

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    root = tmp_path / "server"
    process = ServerProcess(root, video_config=video_config(root)).start()
    yield process
    process.stop()


def test_the_recorded_lecture_notebook_composes_one_playable_file(
    server: ServerProcess, tmp_path: Path
) -> None:
    notebook = nbformat.read(EXAMPLES / "recorded_lecture.ipynb", as_version=4)
    env = {**server.env, "PYTHONPATH": os.getcwd()}
    folder = tmp_path / "notebooks"  # the kernel's folder: compose() writes compositions/ here
    folder.mkdir()
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"], outputs
    compose_cell = next(cell for cell in notebook.cells if "jv.compose(" in cell.source)
    kinds = [set(output.get("data", {})) for output in compose_cell.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in kind for kind in kinds)  # the bar
    player = next(output["data"]["text/html"] for output in compose_cell.outputs
                  if "text/html" in output.get("data", {}))
    [composed] = list((folder / "compositions").glob("CJ*.mp4"))
    assert player.startswith(f'<video src="compositions/{composed.name}" controls')
    fmt, streams, length = ast.literal_eval(notebook.cells[-1].outputs[0]["data"]["text/plain"])
    assert (fmt, streams) == ("mp4", ["h264", "aac"]) and 2.0 <= length <= 4.0

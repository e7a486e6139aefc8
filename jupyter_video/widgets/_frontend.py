"""Where the widgets' front end (built by esbuild from js/) is found."""

from __future__ import annotations

from pathlib import Path

BUNDLE = Path(__file__).resolve().parent.parent / "static" / "widget.js"

# Shown instead of the room when the bundle is missing (a source checkout without npm).
_MISSING = """
export default {
  render({ el }) {
    el.textContent = "jupyter_video's widget front end is not built: run `pip install -e .` "
      + "(it needs Node.js and npm) or `cd js && npm ci && npm run build`.";
  },
};
"""


def esm() -> Path | str:
    """The bundle's path for anywidget, or a module that says how to build it."""
    return BUNDLE if BUNDLE.is_file() else _MISSING


def server_url() -> str:
    """This user's running Jupyter server's base URL, for pages that are not JupyterLab."""
    try:
        from ..account import load_credentials

        return load_credentials().url or ""
    except Exception:  # no server running, unreadable credentials: the page finds its own
        return ""

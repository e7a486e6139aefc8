"""``python -m jupyter_video.compositions JOB.json``: compose one job in this process.

Progress goes to stdout as JSON lines (``{"progress": 0.42}``), then one line with
``{"result": {"duration": ..., "size": ...}}`` or ``{"error": "..."}``. The process
lowers its own priority: live rooms on the same machine come first.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from .composer import Job, compose


def _say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """Linux: end with the server (even one killed outright), so that a composition it
    retries after a restart never has a second writer (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m jupyter_video.compositions JOB.json\n")
        return 2
    with contextlib.suppress(OSError):  # not permitted everywhere; composing still works
        os.nice(10)
    _die_with_parent()
    job = Job.from_json(Path(argv[0]).read_text())
    try:
        result = compose(job, lambda fraction: _say({"progress": round(fraction, 4)}))
    except Exception as error:  # reported to the server, which fails the composition
        _say({"error": f"{type(error).__name__}: {error}"})
        return 1
    _say({"result": asdict(result)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A test-only server extension: ``GET {base_url}video-probe`` reports what the server
holds while nothing should be held (asyncio tasks, live rooms and participants), with
the open files and memory of the server and its media workers (psutil)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import psutil
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web


def process_use(process: psutil.Process) -> dict[str, int]:
    return {"fds": process.num_fds(), "rss": process.memory_info().rss,
            "threads": process.num_threads()}


class ProbeHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        context = self.settings["jupyter_video"]
        conference = context.conference
        server = psutil.Process(os.getpid())
        workers = [p for p in server.children() if "jupyter_video" in " ".join(p.cmdline())]
        self.finish(json.dumps({
            "tasks": len(asyncio.all_tasks()),
            "conference_tasks": len(conference._tasks),
            "live_rooms": len(conference.rooms),
            "live_participants": len(conference._participants),
            "sessions": len(conference.sessions),
            "server": process_use(server),
            "workers": [process_use(worker) for worker in workers],
        }))


class StallHandler(APIHandler):
    """``GET video-probe/stall?seconds=N``: block the server's event loop N seconds, as a
    burst of work (or a machine that swapped the server out) does."""

    @web.authenticated
    def get(self) -> None:
        time.sleep(float(self.get_argument("seconds")))
        self.finish("{}")


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, r"/video-probe"), ProbeHandler),
        (url_path_join(base, r"/video-probe/stall"), StallHandler),
    ])

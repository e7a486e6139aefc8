"""``GET {base_url}video/healthz``: whether this server can host rooms right now.

For load balancers, systemd watchdogs and Kubernetes probes, so it needs no
credentials and says nothing secret: 200 when every media worker is running and
answers, 503 (with the workers that are not) otherwise. A worker that exited is
restarted by the media plane; until then its rooms cannot take participants.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler

from ..errors import VideoError

ANSWER_TIMEOUT = 2.0
"""Seconds the media workers have to answer a stats request before they count as down."""


class HealthHandler(APIHandler):
    """Media worker liveness, unauthenticated."""

    _track_activity = False  # probes are not someone using the server

    @allow_unauthenticated
    async def get(self) -> None:
        media = self.settings["jupyter_video"].media
        workers: list[dict[str, Any]] = [
            {"worker": w.index, "pid": w.pid, "alive": w.alive} for w in media.worker_status()
        ]
        problem = None
        if not all(worker["alive"] for worker in workers):
            down = [str(worker["worker"]) for worker in workers if not worker["alive"]]
            problem = f"media worker {', '.join(down)} is down (restarting)"
        else:
            try:
                # Running is not enough: a worker stuck in a loop answers nothing.
                await asyncio.wait_for(media.stats(), ANSWER_TIMEOUT)
            except (asyncio.TimeoutError, VideoError) as exc:
                problem = f"the media plane did not answer a stats request: {exc or 'timeout'}"
        self.set_status(503 if problem else 200)
        self.set_header("Cache-Control", "no-store")
        body: dict[str, Any] = {"status": "unavailable" if problem else "ok", "workers": workers}
        if problem:
            body["problem"] = problem
        self.finish(json.dumps(body))


handlers: list[tuple[str, type[APIHandler]]] = [(r"/video/healthz/?", HealthHandler)]

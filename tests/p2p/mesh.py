"""Helpers of the peer-to-peer tests: pages of twilio-video.js participants that report
what they receive over each of their peer connections, and what the server's media
plane did meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from ..server_process import ServerProcess
from ..widgets.test_twilio_compat_browser import App

MESH_PAGE = Path(__file__).resolve().parent / "mesh_page.js"


class MeshPage(App):
    """A Chromium page with twilio-video.js, twilio_app.js and mesh_page.js."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(server)
        self.driver.call("addScript", path=str(MESH_PAGE))

    def mesh(self, method: str, *args: Any) -> Any:
        return self.driver.eval(f"(args) => mesh.{method}(...args)", list(args))

    def until(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """The first truthy ``check()``, polled."""
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s: "
                                     f"{self.mesh('peerConnections')} {self.mesh('inbound')} "
                                     f"{self.mesh('loudness')}\n"
                                     f"{self.driver.console_tail()}")
            time.sleep(0.2)
        return result

    def receives(self, video: int, audio: int, timeout: float = 40.0) -> list[dict[str, Any]]:
        """The inbound streams once ``video`` VP8 streams decode 320x240 frames and
        ``audio`` Opus streams carry sound (the tone of twilio_app.js's ``loud``, heard by
        an analyser on each remote audio track)."""

        def check() -> list[dict[str, Any]] | None:
            streams = self.mesh("inbound")
            videos = [s for s in streams if s["kind"] == "video" and s["framesDecoded"] > 10
                      and (s["width"], s["height"]) == (320, 240)]
            opus = [s for s in streams if s["kind"] == "audio" and s["codec"] == "audio/opus"
                    and s["packets"] > 50]
            sounds = [level for level in self.mesh("loudness") if level > 0.05]
            if len(videos) >= video and len(opus) >= audio and len(sounds) >= audio:
                return streams
            return None

        return self.until(f"{video} video and {audio} audio streams", check, timeout)


def media_plane_counters(server: ServerProcess) -> dict[str, float]:
    """The SFU's forwarding counters from ``/video/metrics`` (name -> value)."""
    creds = server.credentials()
    response = requests.get(f"{server.url}video/metrics", timeout=10,
                            auth=(creds["api_key_sid"], creds["api_key_secret"]))
    assert response.status_code == 200, response.text
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.labels:
                counters[sample.name] = sample.value
    return counters

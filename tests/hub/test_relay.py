"""A hub user's server when the hub has the video service: a relay, with no rooms
of its own, that says plainly when the service cannot be asked.

These need no hub: a plain Jupyter server told where the service is (as the hub
admin's ``c.Spawner.environment`` tells every user's server).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jupyter_video.errors import VideoError
from jupyter_video.hub import discovery

from ..server_process import TOKEN, ServerProcess, free_port
from .hub_process import command_line, descendants

NOWHERE = f"http://127.0.0.1:{free_port()}/services/video/"  # nothing listens there


@pytest.fixture
def relay_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-servers-own-hub-token")
    server = ServerProcess(tmp_path / "server", video_config={"hub_service_url": NOWHERE})
    yield server.start()
    server.stop()


def get(server: ServerProcess, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", timeout=30,
                        headers={"Authorization": f"token {TOKEN}"})


def test_a_relay_runs_no_media_plane_and_reports_an_unreachable_service(
    relay_server: ServerProcess,
) -> None:
    assert relay_server.process is not None
    workers = [pid for pid in descendants(relay_server.process.pid)
               if "jupyter_video.sfu" in command_line(pid)]
    assert workers == []
    for path in ("video/token?room=lecture", "video/v1/Rooms"):
        response = get(relay_server, path)
        assert response.status_code == 502, (path, response.text)
        body = response.json()
        assert body["code"] == 53000 and NOWHERE in body["message"]
    assert "rooms are the hub service's" in relay_server.log_text()


def test_a_relay_without_a_hub_token_says_it_was_not_started_by_a_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    server = ServerProcess(tmp_path / "server", video_config={"hub_service_url": NOWHERE})
    try:
        response = get(server.start(), "video/token?room=lecture")
    finally:
        server.stop()
    assert response.status_code == 400 and response.json()["code"] == 53000
    assert "JUPYTERHUB_API_TOKEN" in response.json()["message"]


def test_a_kernel_outside_a_hub_is_told_what_connect_none_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(discovery.SERVICE_URL_ENV, raising=False)
    with pytest.raises(VideoError) as missing:
        discovery.request_grant("lecture")
    assert missing.value.code == 53000
    assert discovery.SERVICE_URL_ENV in missing.value.message
    monkeypatch.setenv(discovery.SERVICE_URL_ENV, NOWHERE.rstrip("/"))
    assert discovery.service_url() == NOWHERE
    with pytest.raises(VideoError) as unreachable:
        discovery.request_grant("lecture", hub_token="t")
    assert unreachable.value.code == 53000 and "cannot be reached" in unreachable.value.message

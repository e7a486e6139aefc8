"""The standalone server: ``jupyter video`` serves the video API and nothing else of Jupyter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ..conftest import make_twilio_client
from ..server_process import TOKEN
from .standalone import StandaloneProcess

AUTH = {"Authorization": f"token {TOKEN}"}


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneProcess]:
    process = StandaloneProcess(
        tmp_path_factory.mktemp("standalone"),
        video_config={"media_workers": 1, "ice_host_addresses": ["127.0.0.1"]},
        args=["--VideoApp.max_participants=7"],
    ).start()
    yield process
    process.stop()


def test_standalone_serves_no_contents_kernels_terminals_or_lab(
    standalone: StandaloneProcess,
) -> None:
    for path in ("api/contents", "api/kernels", "api/terminals", "api/sessions", "lab", "tree"):
        response = requests.get(standalone.url + path, headers=AUTH, timeout=10)
        assert response.status_code == 404, (path, response.status_code)
    status = requests.get(standalone.url + "api/status", headers=AUTH, timeout=10)
    assert status.status_code == 200 and "started" in status.json()


def test_twilio_helper_library_creates_a_room_on_the_standalone_server(
    standalone: StandaloneProcess,
) -> None:
    client = make_twilio_client(standalone)
    room = client.video.v1.rooms.create(unique_name="standalone-room", type="group")
    assert room.sid.startswith("RM") and room.status == "in-progress"
    # --VideoApp.max_participants on the command line is the rooms' default.
    assert room.max_participants == 7
    fetched = client.video.v1.rooms(room.sid).fetch()
    assert fetched.unique_name == "standalone-room"
    assert fetched.url == f"{standalone.url}video/v1/Rooms/{room.sid}"


def test_standalone_prints_rest_base_url_and_where_credentials_are(
    standalone: StandaloneProcess,
) -> None:
    log = standalone.log_text()
    creds = standalone.credentials()
    assert f"client.video.base_url = '{standalone.url}video'" in log
    assert str(standalone.root / "data" / "jupyter_video" / "credentials.json") in log
    assert creds["api_key_sid"] in log
    assert creds["api_key_secret"] not in log and creds["auth_token"] not in log


def test_turn_secret_without_turn_urls_stops_the_server_saying_what_to_fix(
    tmp_path: Path,
) -> None:
    process = StandaloneProcess(tmp_path / "bad", args=["--VideoApp.turn_secret=s3cret"])
    with pytest.raises(RuntimeError, match="server exited early") as failure:
        process.start()
    process.stop()
    assert "VideoApp.turn_secret and VideoApp.turn_urls go together" in str(failure.value)

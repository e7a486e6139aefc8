"""The standalone server: ``jupyter video`` serves the video API and nothing else of Jupyter."""

from __future__ import annotations

import subprocess
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


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl, in Debian's base system) and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_standalone_serves_https_with_certfile_and_keyfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # requests, and Twilio's library
    process = StandaloneProcess(
        tmp_path / "tls", args=["--certfile", str(cert), "--keyfile", str(key)]
    )
    try:
        process.start()
        assert process.url.startswith("https://")
        assert requests.get(process.url + "video/healthz", timeout=10).status_code == 200
        client = make_twilio_client(process)
        room = client.video.v1.rooms.create(unique_name="over-tls")
        assert room.url.startswith(f"https://127.0.0.1:{process.port}/video/v1/Rooms/RM")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{process.port}/video/healthz", timeout=10)
    finally:
        process.stop()


def test_behind_a_tls_proxy_with_trust_xheaders_resource_urls_are_https(tmp_path: Path) -> None:
    """What docs/deploy.md's reverse proxy sends: the public Host and X-Forwarded-Proto."""
    process = StandaloneProcess(
        tmp_path / "proxied",
        args=["--ServerApp.trust_xheaders=True", "--ServerApp.allow_remote_access=True"],
    )
    try:
        process.start()
        creds = process.credentials()
        response = requests.post(
            process.url + "video/v1/Rooms",
            data={"UniqueName": "proxied"},
            auth=(creds["api_key_sid"], creds["api_key_secret"]),
            headers={"Host": "video.example.org", "X-Forwarded-Proto": "https"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        room = response.json()
        assert room["url"] == f"https://video.example.org/video/v1/Rooms/{room['sid']}"
    finally:
        process.stop()

"""Shared fixtures: a real server process and Twilio's helper library pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a test module; tests use unique room names."""
    process = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that stop or restart it."""
    process = ServerProcess(tmp_path / "server")
    yield process
    process.stop()


@pytest.fixture
def twilio_client(server: ServerProcess):  # type: ignore[no-untyped-def]
    return make_twilio_client(server)


def make_twilio_client(server: ServerProcess, use_account: bool = False):  # type: ignore[no-untyped-def]
    """Twilio's own helper library, changed only in its base URL."""
    from twilio.rest import Client

    creds = server.credentials()
    if use_account:
        client = Client(creds["account_sid"], creds["auth_token"])
    else:
        client = Client(creds["api_key_sid"], creds["api_key_secret"], creds["account_sid"])
    client.video.base_url = server.url + "video"
    return client

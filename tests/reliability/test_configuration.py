"""Configuration errors stop ``jupyter server`` at start with a message that says what
to fix, instead of a server that starts without rooms (Jupyter's default for an
extension that fails to load) or starts and never carries media."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..server_process import ServerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"ice_host_addresses": ["192.0.2.77"]},
         "VideoApp.ice_host_addresses: '192.0.2.77' is not an address of this machine"),
        ({"store_url": "sqlite:////proc/no-such-dir/store.sqlite"},
         "store_url 'sqlite:////proc/no-such-dir/store.sqlite' cannot be opened"),
        ({"store_url": "postgres://db/video"},
         "store_url 'postgres://db/video' is not memory:// or sqlite:///"),
        ({"turn_urls": ["turn:127.0.0.1:3478"]},
         "VideoApp.turn_secret and VideoApp.turn_urls go together"),
    ],
    ids=["ice-address-not-local", "store-cannot-open", "store-unknown-scheme", "turn-no-secret"],
)
def test_a_configuration_error_stops_the_server_saying_what_to_fix(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    process = ServerProcess(tmp_path / "server", video_config=setting)
    with pytest.raises(RuntimeError, match="server exited early"):
        process.start()
    assert process.process is not None and process.process.returncode != 0
    assert f"jupyter_video cannot start: {message}" in process.log_text()


def test_a_local_ice_address_starts(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "server", video_config={"ice_host_addresses": ["127.0.0.1"]})
    try:
        process.start()
    finally:
        process.stop()

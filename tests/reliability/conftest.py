"""The reliability suite's server: a real ``jupyter server`` with the extension, media
in one worker process on 127.0.0.1, and a pair of participants that must come
through every attack unharmed (live_pair.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..client.participants import LOOPBACK, room_name
from ..server_process import ServerProcess
from .live_pair import LivePair


def video_config(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "ice_host_addresses": LOOPBACK,
        "media_workers": 1,
        "recordings_dir": str(root / "recordings"),
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("reliability")
    # No join rate limit: the fuzzers' valid connects must reach the room logic
    # (test_security.py tests the limit on a server of its own).
    process = ServerProcess(root, video_config=video_config(root, joins_per_second=0)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def pair(server: ServerProcess) -> Iterator[LivePair]:
    """Alice and Bob exchanging video and data in a room of their own."""
    live = LivePair(server, room_name()).start()
    yield live
    live.stop()


def tracebacks(server: ServerProcess) -> list[str]:
    """Each traceback in the server's log (with the lines before it): a handler or
    task that failed in a way the code did not expect."""
    text = server.log_text()
    return [
        text[max(0, match.start() - 400): match.start() + 3000]
        for match in re.finditer(r"Traceback \(most recent call last\):", text)
    ]

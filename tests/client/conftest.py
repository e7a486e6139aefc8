"""Client tests gather ICE on loopback only (aioice leaves 127.0.0.1 out by default)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_video.sfu.adapter import use_host_addresses


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses(None)


UNIT_TIMEOUT = 30  # seconds; the end-to-end module sets its own


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))

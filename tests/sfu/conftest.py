"""Fixtures of the media-plane tests: a media plane in-process and in a worker,
and real aiortc clients (:mod:`tests.sfu.peers`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane

from .peers import Client, sid


@pytest.fixture(params=["in-process", "worker"])
async def plane(request: pytest.FixtureRequest) -> AsyncIterator[MediaPlane]:
    workers = 0 if request.param == "in-process" else 1
    media = create_media_plane(workers, host_addresses=["127.0.0.1"])
    async with media:
        yield media


@pytest.fixture
async def clients(plane: MediaPlane) -> AsyncIterator[Callable[[int], Client]]:
    made: list[Client] = []

    def make(n: int) -> Client:
        client = Client(plane, sid("PA", n))
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(Exception):
            await client.close()

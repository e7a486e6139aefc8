"""Media workers: the media plane in worker processes, over JSON-lines pipes.

The parent (:class:`WorkerMediaPlane`) starts ``media_workers`` processes
running ``python -m jupyter_video.sfu``, pins each room to one of them
and speaks one JSON object per line over the worker's stdin / stdout:

- parent -> worker: ``{"id": 7, "command": {"type": "ApplyOffer", ...}}``
- worker -> parent: ``{"id": 7, "result": ...}`` or
  ``{"id": 7, "error": {"code": 53403, "message": ...}}``, and
  ``{"event": {"type": "TrackReceived", ...}}`` whenever something happens.

A worker that exits fails its pending calls with 53405 and is reported as a
:class:`WorkerExited` event (its rooms are gone, and the control plane restores
their peers on a live worker); nothing waits on it, and a fresh process takes its
place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, BinaryIO

from ..errors import MediaError, ParticipantError, RoomError, VideoError
from .interface import (
    AddPeer,
    CloseRoom,
    Command,
    DataLimits,
    GetStats,
    MediaPlane,
    MediaStats,
    RemovePeer,
    RestorePeer,
    StopRecording,
    Subscribe,
    Unsubscribe,
    WorkerExited,
    WorkerStatus,
    command_from_json,
    dumps,
    error_from_json,
    error_to_json,
    event_from_json,
    result_to_json,
    to_json,
)

logger = logging.getLogger(__name__)

LINE_LIMIT = 16 * 1024 * 1024
"""Longest JSON line (an SDP with many m-lines is tens of kB)."""
STOP_TIMEOUT = 5.0
RESTART_DELAY = 1.0
"""Seconds before a fresh process replaces a worker that exited (no crash loop storms)."""
WORKER_EXITED = 53405


class MediaWorker:
    """One worker process and the calls in flight to it."""

    def __init__(self, index: int, arguments: Sequence[str], plane: WorkerMediaPlane) -> None:
        self.index = index
        self.arguments = list(arguments)
        self.rooms: set[str] = set()
        self.participants: set[str] = set()
        self.process: asyncio.subprocess.Process | None = None
        self.alive = False
        self._plane = plane
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jupyter_video.sfu",
            *self.arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        self.alive = True
        self._reader = asyncio.ensure_future(self._read())

    async def call(self, command: Command) -> Any:
        """Send ``command`` and wait for its result."""
        if not self.alive or self.process is None or self.process.stdin is None:
            raise MediaError(WORKER_EXITED, f"Media worker {self.index} has exited")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        line = dumps({"id": call_id, "command": to_json(command)})
        self.process.stdin.write(line.encode())
        with contextlib.suppress(ConnectionError):  # the reader sees the exit
            await self.process.stdin.drain()
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while line := await stdout.readline():
                self._dispatch(json.loads(line))
        except (ConnectionError, ValueError) as exc:
            logger.error("media worker %d: bad output: %s", self.index, exc)
        await self._exited()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "event" in message:
            self._plane.report(event_from_json(message["event"]))
            return
        future = self._pending.get(message.get("id", -1))
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(error_from_json(message["error"]))
        else:
            future.set_result(message.get("result"))

    async def _exited(self) -> None:
        self.alive = False
        assert self.process is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    MediaError(WORKER_EXITED, f"Media worker {self.index} has exited")
                )
        self._plane.worker_exited(self)

    async def stop(self) -> None:
        """Close the worker's stdin (it closes its peers and exits); kill if it hangs."""
        process = self.process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class WorkerMediaPlane(MediaPlane):
    """The media plane in ``workers`` processes, each room pinned to one of them."""

    def __init__(
        self,
        workers: int | None = None,
        host_addresses: Sequence[str] | None = None,
        public_address: str | None = None,
        data_limits: DataLimits | None = None,
    ) -> None:
        super().__init__()
        count = workers or os.cpu_count() or 1
        limits = data_limits or DataLimits()
        arguments: list[str] = [
            "--max-data-message-bytes", str(limits.max_message_bytes),
            "--data-messages-per-second", repr(limits.messages_per_second),
            "--data-message-burst", str(limits.burst),
            # The worker logs at the level this process logs the package at.
            "--log-level", str(logging.getLogger("jupyter_video").getEffectiveLevel()),
        ]
        for address in host_addresses or []:
            arguments += ["--host-address", address]
        if host_addresses is not None and not host_addresses:
            arguments += ["--no-host-addresses"]
        if public_address:
            arguments += ["--public-address", public_address]
        self.workers = [MediaWorker(i, arguments, self) for i in range(count)]
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()

    def worker_status(self) -> list[WorkerStatus]:
        return [WorkerStatus(w.index, w.pid, w.alive) for w in self.workers]

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.workers if w.process is None))

    async def close(self) -> None:
        self._closing = True
        for task in self._restarts:
            task.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers))

    def worker_exited(self, worker: MediaWorker) -> None:
        exit_code = worker.process.returncode if worker.process is not None else None
        if not self._closing:
            logger.error("media worker %d exited with %s", worker.index, exit_code)
        self.report(
            WorkerExited(worker.index, exit_code, sorted(worker.rooms), sorted(worker.participants))
        )
        worker.rooms.clear()
        worker.participants.clear()
        if not self._closing:
            task = asyncio.ensure_future(self._restart(worker))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: MediaWorker) -> None:
        await asyncio.sleep(RESTART_DELAY)
        if not self._closing:
            await worker.start()

    async def execute(self, command: Command) -> Any:
        if isinstance(command, GetStats):
            alive = [w for w in self.workers if w.alive]
            results = await asyncio.gather(*(w.call(command) for w in alive))
            return [MediaStats(**r) for r in results]
        if isinstance(command, StopRecording):
            # Its participant may have left already: whichever worker has it answers.
            alive = [w for w in self.workers if w.alive]
            results = await asyncio.gather(*(w.call(command) for w in alive))
            return next((r for r in results if r is not None), None)
        if isinstance(command, AddPeer | RestorePeer):
            worker = self._worker_for_room(command.room_sid)
            result = await worker.call(command)
            worker.rooms.add(command.room_sid)
            worker.participants.add(command.participant_sid)
            return result
        if isinstance(command, CloseRoom):
            worker = self._worker_of_room(command.room_sid)
            try:
                return await worker.call(command)
            finally:
                worker.rooms.discard(command.room_sid)
        participant_sid = (
            command.subscriber_sid
            if isinstance(command, (Subscribe, Unsubscribe))
            else command.participant_sid  # type: ignore[attr-defined]
        )
        worker = self._worker_of_participant(participant_sid)
        try:
            return await worker.call(command)
        finally:
            if isinstance(command, RemovePeer):
                worker.participants.discard(participant_sid)

    def _worker_for_room(self, room_sid: str) -> MediaWorker:
        for worker in self.workers:
            if room_sid in worker.rooms:
                return worker
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise MediaError(WORKER_EXITED, "No media worker is running")
        return min(alive, key=lambda w: len(w.rooms))

    def _worker_of_room(self, room_sid: str) -> MediaWorker:
        for worker in self.workers:
            if room_sid in worker.rooms:
                return worker
        raise RoomError(53106, f"Room {room_sid} not found")

    def _worker_of_participant(self, participant_sid: str) -> MediaWorker:
        for worker in self.workers:
            if participant_sid in worker.participants:
                return worker
        raise ParticipantError(53204, f"Participant {participant_sid} not found")


# ------------------------------------------------------------ worker process


async def serve(plane: MediaPlane, output: BinaryIO) -> None:
    """Run ``plane`` on the commands read from stdin until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write(message: dict[str, Any]) -> None:
        output.write(dumps(message).encode())
        output.flush()

    async def forward_events() -> None:
        async for event in plane.events():
            write({"event": to_json(event)})

    async def run(call_id: int, command: Command) -> None:
        try:
            result = await plane.execute(command)
        except VideoError as exc:
            write({"id": call_id, "error": error_to_json(exc)})
        except Exception as exc:
            logger.exception("media worker: %s failed", type(command).__name__)
            write({"id": call_id, "error": error_to_json(MediaError(53401, str(exc)))})
        else:
            write({"id": call_id, "result": result_to_json(result)})

    events = asyncio.ensure_future(forward_events())
    calls: set[asyncio.Task[None]] = set()
    await plane.start()
    try:
        while line := await reader.readline():
            message = json.loads(line)
            task = asyncio.ensure_future(run(message["id"], command_from_json(message["command"])))
            calls.add(task)
            task.add_done_callback(calls.discard)
    finally:
        for task in calls:
            task.cancel()
        await plane.close()
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of a media worker process."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_video.sfu")
    parser.add_argument("--host-address", action="append", dest="host_addresses")
    parser.add_argument("--no-host-addresses", action="store_true")
    parser.add_argument("--public-address")
    defaults = DataLimits()
    parser.add_argument("--max-data-message-bytes", type=int, default=defaults.max_message_bytes)
    parser.add_argument("--data-messages-per-second", type=float,
                        default=defaults.messages_per_second)
    parser.add_argument("--data-message-burst", type=int, default=defaults.burst)
    parser.add_argument("--log-level", type=int, default=logging.WARNING,
                        help="the package's log level (logging's numbers: 20 is INFO)")
    args = parser.parse_args(argv)
    data_limits = DataLimits(
        args.max_data_message_bytes, args.data_messages_per_second, args.data_message_burst)
    host_addresses = [] if args.no_host_addresses else args.host_addresses

    # The protocol owns the real stdout; anything else printed goes to stderr.
    output = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[%(levelname).1s %(asctime)s media worker %(process)d] "
                               "%(name)s: %(message)s")
    logging.getLogger("jupyter_video").setLevel(args.log_level)

    from .. import _aiortc as adapter
    from .plane import LocalMediaPlane

    adapter.count_codecs()
    plane = LocalMediaPlane(host_addresses=host_addresses, public_address=args.public_address,
                            data_limits=data_limits)
    run(serve(plane, output))


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the worker on uvloop: every packet wakes the loop (a datagram in, one out per
    subscriber), and libuv's loop does that in a fraction of asyncio's own time. The
    in-process plane (``media_workers = 0``) stays on whatever loop Jupyter runs."""
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows): asyncio's loop
        asyncio.run(main)
        return
    uvloop.run(main)


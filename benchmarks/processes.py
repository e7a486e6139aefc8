"""The processes of a benchmark: clients in children of its own, and the media
worker from this checkout or another (the frame path on ``main`` against the
packet path, in the same run on the same machine)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    from jupyter_video._aiortc import use_host_addresses
except ImportError:  # a checkout from before the adapter left sfu/
    from jupyter_video.sfu.adapter import use_host_addresses
from jupyter_video.sfu.worker import WorkerMediaPlane

LOOPBACK = ["127.0.0.1"]
T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (as the media workers do) where it is installed: the
    clients' own event loop then costs less of the cores the SFU is measured on."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped on arrival at process ``pid``'s UDP sockets (a
    full receive buffer: the process did not read in time), from /proc/net/udp."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    drops = 0
    for table in ("udp", "udp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    drops += int(fields[-1])
    return drops


class Child:
    """A benchmark script in a child process (``script --serve-<role>``): one JSON
    request per line on its stdin, one JSON reply per line on its stdout."""

    def __init__(self, script: str, role: str, *arguments: str) -> None:
        self.command = [sys.executable, script, f"--serve-{role}", *arguments]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def call(self, **request: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(self.command)} exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def close(self) -> None:
        """Close its stdin (it closes its peers and exits); kill it if it hangs."""
        assert self.process is not None and self.process.stdin
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()


async def serve(handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """A child's loop: answer each request line with ``handle``, until stdin closes."""
    use_host_addresses(LOOPBACK)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        sys.stdout.write(json.dumps(await handle(json.loads(line))) + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def _imports_from(tree: str | None) -> Iterator[None]:
    """While starting a process, make ``python -m jupyter_video...`` import ``tree``'s
    package (``-m`` puts the working directory first on ``sys.path``)."""
    if tree is None:
        yield
        return
    cwd, pythonpath = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(Path(tree).resolve())
    try:
        yield
    finally:
        os.chdir(cwd)
        if pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = pythonpath


async def start_media_plane(tree: str | None = None) -> WorkerMediaPlane:
    """One media worker process, running ``tree``'s ``jupyter_video`` (a checkout of
    another branch: ``git archive main | tar -x -C DIR``) or this one's. The
    control side here speaks the interface's JSON lines to either."""
    plane = WorkerMediaPlane(1, host_addresses=LOOPBACK)
    with _imports_from(tree):
        await plane.start()
    return plane


def media_worker_pid(plane: WorkerMediaPlane) -> int:
    return plane.worker_pids[0]


# ------------------------------------------------------------------ profiling


async def profile(pid: int, seconds: float, path: str) -> asyncio.subprocess.Process:
    """Start sampling process ``pid`` with py-spy (the test extra) for ``seconds``,
    into ``path`` as collapsed stacks; await the returned process's ``wait()``.
    Idle samples are left out, so the counts are CPU time."""
    py_spy = Path(sys.executable).with_name("py-spy")
    return await asyncio.create_subprocess_exec(
        str(py_spy), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", "250", "--format", "raw", "--output", path, "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def profile_summary(path: str, top: int = 15) -> dict[str, Any]:
    """Where the sampled time went: the share of the samples each function is on top
    of (self; also summed per file) and anywhere on the stack (total)."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    files: dict[str, int] = {}
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        # "name (file.py:line)" -> "name (file.py)": a function, not one of its lines.
        frames = [frame.rsplit(":", 1)[0] + ")" for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        where = frames[-1].rpartition("(")[2].rstrip(")")
        files[where] = files.get(where, 0) + count
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + count

    def percent(counts: dict[str, int], limit: int) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return {name: round(100 * n / max(samples, 1), 1) for name, n in ranked}

    return {
        "samples": samples,
        "self_percent": percent(own, top),
        "self_percent_by_file": percent(files, top),
        "total_percent": percent(anywhere, 3 * top),
    }

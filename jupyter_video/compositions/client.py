"""``jupyter_video.compose(room)``: one video file of a recorded room, from a kernel.

Asks this user's running server (its Compositions REST API, with the credentials
in the Jupyter data directory) to compose the room's track recordings, shows a
progress bar while it does, downloads the file and returns it as a
:class:`ComposedVideo`, which a notebook plays inline.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..account import Credentials, load_credentials
from ..errors import VideoError

GRID: dict[str, Any] = {"grid": {"video_sources": ["*"]}}
"""Every camera in one grid, the layout ``compose(room)`` uses unless told another."""
POLL = 0.5  # seconds between status checks
PERCENT_HEADER = "X-Jupyter-Video-Percentage-Done"
REMAINING_HEADER = "X-Jupyter-Video-Seconds-Remaining"
MIME = {"mp4": "video/mp4", "webm": "video/webm"}
EMBED_LIMIT = 64 << 20
"""Largest file a notebook gets inline as base64 (bigger ones would stall the browser)."""


@dataclass(frozen=True)
class ComposedVideo:
    """A composition's file on this machine; shown in a notebook, it plays."""

    sid: str
    path: Path
    format: str
    duration: int | None
    size: int | None

    def _repr_html_(self) -> str:
        # A file under the notebook's folder is played from where Jupyter serves it
        # (JupyterLab resolves relative src through /files/); another is embedded, if small.
        with contextlib.suppress(ValueError):
            relative = self.path.resolve().relative_to(Path.cwd().resolve())
            source = html.escape(urllib.parse.quote(relative.as_posix()))
            return f'<video src="{source}" controls style="max-width: 100%"></video>'
        if self.path.stat().st_size > EMBED_LIMIT:
            return f"<code>{html.escape(str(self.path))}</code> (too large to embed)"
        from IPython.display import Video

        embedded: str = Video(str(self.path), embed=True, mimetype=MIME[self.format])._repr_html_()
        return embedded

    def widget(self) -> Any:
        """An ``ipywidgets.Video`` of the file (for layouts built from widgets)."""
        import ipywidgets

        return ipywidgets.Video.from_file(str(self.path), format=self.format, autoplay=False)

    def __fspath__(self) -> str:
        return str(self.path)


def compose(
    room: str,
    layout: str | Mapping[str, Any] = "grid",
    format: str = "mp4",
    *,
    audio_sources: Sequence[str] = ("*",),
    resolution: str = "1280x720",
    trim: bool = True,
    directory: str | Path | None = None,
    progress: bool = True,
    timeout: float | None = None,
    credentials: Credentials | None = None,
) -> ComposedVideo:
    """Compose the recordings of ``room`` (a name or RM SID of an ended room) into one file.

    ``layout`` is ``"grid"`` (every camera in one grid) or a Twilio VideoLayout dict
    (https://www.twilio.com/docs/video/api/compositions-resource#specifying-video-layouts);
    ``format`` is ``mp4`` (H.264 + AAC) or ``webm`` (VP8 + Opus). Blocks until the file
    is downloaded into ``directory`` (default: ``compositions/`` in the current folder, the
    notebook's, so that Jupyter serves it to the inline player), showing a progress bar
    unless ``progress=False``.
    """
    credentials = credentials or load_credentials()
    if credentials.url is None:
        raise VideoError(
            20404,
            "No running jupyter_video server found: start JupyterLab, or set JUPYTER_VIDEO_URL",
        )
    root = credentials.url + "video/v1"
    if isinstance(layout, str):
        if layout != "grid":
            raise VideoError(20001, f'layout must be "grid" or a VideoLayout dict, not {layout!r}')
        layout = GRID
    form: list[tuple[str, str]] = [
        ("RoomSid", _room_sid(root, room, credentials)),
        ("VideoLayout", json.dumps(dict(layout))),
        ("Format", format),
        ("Resolution", resolution),
        ("Trim", "true" if trim else "false"),
        *(("AudioSources", source) for source in audio_sources),
    ]
    created = json.load(_request("POST", f"{root}/Compositions", credentials, form))
    report = _progress_bar(created["sid"]) if progress else (lambda percent, remaining: None)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        response = _request("GET", created["url"], credentials)
        state = json.load(response)
        if state["status"] == "completed":
            report(100, 0)
            break
        if state["status"] in ("failed", "deleted"):
            raise VideoError(53626, f"Composition {state['sid']} {state['status']}; see the "
                             "server log for why")
        percent = response.headers.get(PERCENT_HEADER)
        if percent is not None:
            report(int(percent), response.headers.get(REMAINING_HEADER))
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Composition {state['sid']} is still {state['status']}")
        time.sleep(POLL)
    folder = Path(directory or "compositions")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{state['sid']}.{state['format']}"
    partial = target.with_suffix(".part")
    media = f"{state['links']['media']}/{state['sid']}.{state['format']}"
    with _request("GET", media, credentials) as body, open(partial, "wb") as out:
        shutil.copyfileobj(body, out)
    partial.replace(target)
    return ComposedVideo(state["sid"], target, state["format"], state["duration"], state["size"])


def _room_sid(root: str, room: str, credentials: Credentials) -> str:
    """The SID of ``room``: itself, or the newest room of that name (ended ones included:
    a name finds only rooms in progress in ``/Rooms/{name}``)."""
    if re.fullmatch(r"RM[0-9a-fA-F]{32}", room):
        return room
    query = urllib.parse.urlencode({"UniqueName": room, "PageSize": "1"})
    rooms = json.load(_request("GET", f"{root}/Rooms?{query}", credentials))["rooms"]
    if not rooms:
        raise VideoError(53106, f"No room named {room!r}: give its name or RM... SID")
    return str(rooms[0]["sid"])


def _progress_bar(sid: str) -> Callable[[int, Any], None]:
    """An ipywidgets progress bar in a notebook; a line on stderr elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            raise ImportError
        import ipywidgets
        from IPython.display import display
    except ImportError:
        def text(percent: int, remaining: Any) -> None:
            left = f", {remaining} s left" if remaining not in (None, "") else ""
            sys.stderr.write(f"\rcomposing {sid}: {percent:3d}%{left}")
            if percent >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()

        return text
    bar = ipywidgets.IntProgress(value=0, min=0, max=100, description="composing")
    label = ipywidgets.Label("enqueued")
    display(ipywidgets.HBox([bar, label]))

    def widget(percent: int, remaining: Any) -> None:
        bar.value = percent
        label.value = "done" if percent >= 100 else f"{percent}%, {remaining or '?'} s left"
        if percent >= 100:
            bar.bar_style = "success"

    return widget


def _request(method: str, url: str, credentials: Credentials,
             form: list[tuple[str, str]] | None = None) -> Any:
    """One REST call with HTTP Basic auth (the API key); Twilio's errors as VideoError."""
    secret = f"{credentials.api_key_sid}:{credentials.api_key_secret}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(secret).decode()}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        return urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        try:
            body = json.load(error)
            raise VideoError(int(body["code"]), str(body["message"])) from None
        except (ValueError, KeyError):
            raise VideoError(20500, f"{url} answered HTTP {error.code}") from None

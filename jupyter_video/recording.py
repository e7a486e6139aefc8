"""Recordings from a kernel: list a room's track recordings, open one as a file or frames.

``jupyter_video.recordings("lab")`` asks this user's running server (its REST
API, with the credentials in the Jupyter data directory) for the recordings
of room ``lab``; each :class:`TrackRecording` downloads its Matroska file
once (:meth:`~TrackRecording.path`) and decodes it with PyAV for playback
(:meth:`~TrackRecording.frames`): decoding here is the notebook's business,
the SFU never does it.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .account import Credentials, load_credentials
from .errors import VideoError

PAGE_SIZE = 100


@dataclass(frozen=True)
class TrackRecording:
    """One recorded track, as the Recordings REST resource describes it."""

    sid: str
    room_sid: str
    participant_sid: str
    source_sid: str
    track_name: str
    type: str  # audio | video
    status: str  # processing | completed | deleted | failed
    codec: str | None
    container_format: str  # mkv | mka
    duration: int | None
    size: int | None
    media_url: str
    _credentials: Credentials

    @classmethod
    def from_json(cls, data: dict[str, Any], credentials: Credentials) -> TrackRecording:
        return cls(
            sid=data["sid"],
            room_sid=data["room_sid"],
            participant_sid=data["grouping_sids"]["participant_sid"],
            source_sid=data["source_sid"],
            track_name=data["track_name"],
            type=data["type"],
            status=data["status"],
            codec=data["codec"],
            container_format=data["container_format"],
            duration=data["duration"],
            size=data["size"],
            media_url=data["links"]["media"],
            _credentials=credentials,
        )

    def path(self, directory: str | Path | None = None) -> Path:
        """The recording's file on this machine, downloaded once into ``directory``
        (default: a ``jupyter_video-recordings`` folder in the temporary directory)."""
        folder = Path(directory or Path(tempfile.gettempdir()) / "jupyter_video-recordings")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.sid}.{self.container_format}"
        if not target.exists() or (self.size is not None and target.stat().st_size != self.size):
            partial = target.with_suffix(".part")
            with _open(self.media_url, self._credentials) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
            partial.replace(target)
        return target

    def frames(self) -> Iterator[np.ndarray]:
        """The decoded media: HxWx3 RGB arrays for video, (channels, samples) float
        arrays for audio, in order."""
        import av

        with av.open(str(self.path())) as container:
            if self.type == "video":
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
            else:
                for audio in container.decode(audio=0):
                    yield audio.to_ndarray()


def recordings(room: str | None = None, *, status: str | None = None,
               credentials: Credentials | None = None) -> list[TrackRecording]:
    """The track recordings of ``room`` (a name or RM SID; None: every room), newest first.

    ``status`` filters (``completed``, ``processing``, ``failed``, ``deleted``).
    Asks this user's running server unless ``credentials`` (with ``url``) say another.
    """
    credentials = credentials or load_credentials()
    if credentials.url is None:
        raise VideoError(
            20404,
            "No running jupyter_video server found: start JupyterLab, or set JUPYTER_VIDEO_URL",
        )
    root = credentials.url + "video/v1"
    path = f"/Rooms/{urllib.parse.quote(room, safe='')}/Recordings" if room else "/Recordings"
    query = {"PageSize": str(PAGE_SIZE), **({"Status": status} if status else {})}
    url: str | None = f"{root}{path}?{urllib.parse.urlencode(query)}"
    found: list[TrackRecording] = []
    while url:
        with _open(url, credentials) as response:
            page = json.load(response)
        found += [TrackRecording.from_json(item, credentials) for item in page["recordings"]]
        url = page["meta"]["next_page_url"]
    return found


def _open(url: str, credentials: Credentials) -> Any:
    """GET ``url`` with HTTP Basic auth (the API key); Twilio's errors as VideoError."""
    secret = f"{credentials.api_key_sid}:{credentials.api_key_secret}".encode()
    request = urllib.request.Request(
        url, headers={"Authorization": "Basic " + base64.b64encode(secret).decode()}
    )
    try:
        return urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        try:
            body = json.load(error)
            raise VideoError(int(body["code"]), str(body["message"])) from None
        except (ValueError, KeyError):
            raise VideoError(20500, f"{url} answered HTTP {error.code}") from None

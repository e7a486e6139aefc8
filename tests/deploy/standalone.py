"""``jupyter video`` in a subprocess, the way a team leaving Twilio runs it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..server_process import TOKEN, ServerProcess

JUPYTER = Path(sys.executable).with_name("jupyter")


class StandaloneProcess(ServerProcess):
    """``jupyter video --ip 127.0.0.1 --port N ...`` with its own data, runtime and
    config dirs; VideoApp settings go in ``jupyter_video_config.json`` (the file the
    standalone server reads), ``args`` on its command line."""

    config_file = "jupyter_video_config.json"

    def __init__(
        self,
        root: Path,
        video_config: dict[str, Any] | None = None,
        args: list[str] | None = None,
        base_url: str = "/",
    ) -> None:
        super().__init__(root, video_config=video_config, base_url=base_url)
        self.args = list(args or [])
        self.scheme = "https" if any(a.startswith("--certfile") for a in self.args) else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.base_url}"

    def command(self) -> list[str]:
        return [
            str(JUPYTER), "video", "--ip", "127.0.0.1", "--port", str(self.port),
            "--allow-root", f"--IdentityProvider.token={TOKEN}", *self.args,
        ]

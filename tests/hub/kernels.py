"""A kernel of a hub user's own server, started and run over its REST and WebSocket API.

What JupyterLab does when a notebook runs a cell, minus the page: ``POST
/user/<name>/api/kernels`` and ``execute_request`` messages on the kernel's
channels socket. The kernel is the user's real one, with the environment its
server gives kernels (``JUPYTERHUB_API_TOKEN``, ``JUPYTER_VIDEO_HUB_SERVICE_URL``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import requests
from websockets.sync.client import connect


class KernelError(AssertionError):
    """The code raised in the kernel; the message is the kernel's traceback."""


class UserKernel:
    """One python3 kernel of ``user``'s server behind the hub's proxy."""

    def __init__(self, hub_url: str, user: str, token: str) -> None:
        self.base = f"{hub_url}user/{user}/"
        self.user = user
        self.token = token
        response = requests.post(f"{self.base}api/kernels", json={"name": "python3"},
                                 headers={"Authorization": f"token {token}"}, timeout=60)
        response.raise_for_status()
        self.kernel_id = response.json()["id"]
        ws_base = self.base.replace("http://", "ws://", 1)
        self._stack = contextlib.ExitStack()
        self.socket = self._stack.enter_context(connect(
            f"{ws_base}api/kernels/{self.kernel_id}/channels",
            additional_headers={"Authorization": f"token {token}"}, open_timeout=30,
            max_size=None))
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute ``code``; its printed output, or KernelError with the traceback."""
        msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.user,
                       "session": self.session, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        output: list[str] = []
        error: dict[str, Any] | None = None
        while True:
            message = json.loads(self.socket.recv(timeout=timeout))
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "execute_result":
                output.append(content["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                error = content
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error is not None:
            raise KernelError(f"{self.user}'s kernel: {error['ename']}: {error['evalue']}\n"
                              + "\n".join(error.get("traceback", [])) + "".join(output))
        return "".join(output)

    def close(self) -> None:
        self._stack.close()
        requests.delete(f"{self.base}api/kernels/{self.kernel_id}",
                        headers={"Authorization": f"token {self.token}"}, timeout=30)

"""``jupyter video``: the video server on its own, for teams leaving Twilio.

:class:`VideoServerApp` is a ``ServerApp`` narrowed to this project's handlers
and ``/api/status``: no contents, kernels, terminals, files or Lab (those answer
404), and no other server extension is loaded. It keeps everything else of
jupyter_server: ``--ip``, ``--port``, ``--certfile``/``--keyfile``,
``--ServerApp.trust_xheaders``, ``base_url``, token auth for ``/video/token``,
and every ``VideoApp`` traitlet (``--VideoApp.turn_secret=...``).

The JupyterHub service (``jupyter_video.hub``) runs the same narrowed server
under ``/services/<name>/``: subclass :class:`VideoServerApp` /
:class:`StandaloneVideoApp`, or :func:`launch` with ``--ServerApp.base_url``.
"""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_server.serverapp import ServerApp
from jupyter_server.services.api.handlers import APIStatusHandler
from traitlets import default

from .app import VideoApp

# ``ServerApp.extra_services`` loads ``default_handlers`` from the modules it names:
# this module is the one service the narrowed server adds to the video handlers.
default_handlers: list[tuple[str, type[APIStatusHandler]]] = [(r"/api/status", APIStatusHandler)]

_STATUS_SERVICE = __name__


class VideoServerApp(ServerApp):
    """A Jupyter server that serves only jupyter_video's handlers and ``/api/status``."""

    name = "jupyter-video"
    description = "The jupyter_video server on its own: rooms, REST, signaling, tokens."

    # ServerApp's documented way to expose a subset of its services: none of its
    # own (auth needs no handlers of its own: the identity provider adds /login).
    default_services = ("auth",)  # type: ignore[assignment]  # ServerApp's is a 13-tuple

    @default("extra_services")
    def _default_extra_services(self) -> list[str]:
        return [_STATUS_SERVICE]

    @default("reraise_server_extension_failures")
    def _default_reraise_server_extension_failures(self) -> bool:
        # Without its one extension this server serves nothing: a bad VideoApp setting
        # must stop it with its message, not leave it running without video handlers.
        return True

    def launch_browser(self) -> None:
        # A server for other machines' clients: there is no page here to open.
        return None

    def start_app(self) -> None:
        super().start_app()
        self.log.info("%s", "\n".join(self.video_banner()))

    def video_banner(self) -> list[str]:
        """Where the REST API is and where its credentials come from (no secrets)."""
        video = self._video_app()
        root = self.connection_url.rstrip("/") + "/video"
        lines = [
            f"jupyter_video REST API: {root}/v1 "
            f"(Twilio's helper library: client.video.base_url = {root!r})",
            f"jupyter_video signaling: {self.connection_url.replace('http', 'ws', 1)}"
            "video/signaling",
        ]
        if video is not None:
            context = video.context
            lines.append(
                f"jupyter_video credentials: account {context.credentials.account_sid}, "
                f"API key {context.credentials.api_key_sid}; secrets in "
                f"{video.credentials_file} (mode 0600), or JUPYTER_VIDEO_* variables "
                "where set"
            )
        return lines

    def _video_app(self) -> VideoApp | None:
        for apps in self.extension_manager.extension_apps.values():
            for app in apps:
                if isinstance(app, VideoApp):
                    return app
        return None


class StandaloneVideoApp(VideoApp):
    """``jupyter video``: :class:`VideoApp` served by a :class:`VideoServerApp`."""

    serverapp_class = VideoServerApp
    load_other_extensions = False


def launch(argv: Sequence[str] | None = None) -> None:
    """Run the narrowed server until it is stopped (``argv``: its command line,
    default ``sys.argv[1:]``; ``--ServerApp.base_url=/services/video/`` and the like)."""
    StandaloneVideoApp.launch_instance(argv=list(argv) if argv is not None else None)


def main() -> None:
    """Console script ``jupyter-video`` (``jupyter video``)."""
    launch()

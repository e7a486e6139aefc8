"""One video server for every user of a JupyterHub.

- :mod:`.service`: ``jupyter-video-hub``, the video server run as a Hub-managed
  service under ``/services/<name>/`` (Hub OAuth; identity = the hub user).
- :mod:`.roles`: who may create, complete and moderate rooms there.
- :mod:`.relay`: the extension in each user's server when the service exists:
  no media plane of its own, ``/video/token`` (and REST) relayed to the service.
- :mod:`.discovery`: where the service is, as a kernel of a hub user finds it.

This module imports nothing heavy: a user's server and kernels load it too.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # ``jupyter-video-hub`` launches this package's app, not jupyter_video's own.
    from .service import HubVideoApp

    return [{"module": "jupyter_video.hub.service", "app": HubVideoApp}]

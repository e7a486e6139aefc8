"""``python -m jupyter_video.sfu``: run one media worker (see :mod:`.worker`)."""

from .worker import main

main()

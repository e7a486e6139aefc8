"""``GET {base_url}video/metrics``: Prometheus text exposition of rooms and media.

Names follow LiveKit's (``livekit_room_total``, ``livekit_packet_total``): a
``jupyter_video_`` prefix, gauges for what exists now, ``_total`` counters for
what happened since a media worker started (a restarted worker starts again
from 0, which Prometheus' ``rate()`` reads as a counter reset).

Each scrape reads the control plane's records and asks the media plane for its
counters (one ``GetStats`` over the typed interface), so nothing is kept in
between and nothing is counted on the packet path for this page. Authenticated
like REST (HTTP Basic with the API key or account, or a Jupyter session) unless
``VideoApp.metrics_public``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from tornado import web

from ..model import (
    Participant,
    ParticipantStatus,
    PublishedTrack,
    Record,
    Room,
    RoomStatus,
    SubscribedTrack,
    TrackKind,
)
from ..model.room import SUPPORTED_TYPES
from ..model.track import PublicationState, SubscriptionState
from ..sfu.interface import FIRST_FRAME_BUCKETS, MediaStats, WorkerStatus
from ..store import Query, Store
from .rest import TwilioHandler

PREFIX = "jupyter_video_"


@dataclass
class RoomCounts:
    """What the control plane's records hold now."""

    rooms: Counter[str]  # room type -> rooms in progress
    participants: int
    published: Counter[str]  # track kind -> tracks published
    subscribed: Counter[str]  # track kind -> subscriptions


def count_rooms(store: Store) -> RoomCounts:
    """Rooms in progress, their connected participants and their tracks.

    One count per value, whatever the number of rooms (benchmarks/observability.py:
    reading room by room took 186 ms a scrape at 1000 rooms, on the server's loop).
    """

    def count(cls: type[Record], **equal: str) -> int:
        return store.count(cls, Query(equal))

    in_progress = RoomStatus.IN_PROGRESS.value
    published = PublicationState.PUBLISHED.value
    subscribed = SubscriptionState.SUBSCRIBED.value
    kinds = [kind.value for kind in TrackKind]
    return RoomCounts(
        rooms=Counter(
            {t.value: count(Room, status=in_progress, type=t.value) for t in SUPPORTED_TYPES}
        ),
        participants=sum(
            count(Participant, status=status.value)
            for status in (ParticipantStatus.CONNECTED, ParticipantStatus.RECONNECTING)
        ),
        published=Counter(
            {k: count(PublishedTrack, state=published, track_kind=k) for k in kinds}
        ),
        subscribed=Counter(
            {k: count(SubscribedTrack, state=subscribed, track_kind=k) for k in kinds}
        ),
    )


class Snapshot(Collector):
    """One scrape's values as Prometheus metric families."""

    def __init__(
        self,
        rooms: RoomCounts,
        media: list[MediaStats],
        workers: list[WorkerStatus],
        callbacks_waiting: int,
        callbacks_dropped: int,
    ) -> None:
        self.rooms = rooms
        self.media = media
        self.workers = workers
        self.callbacks_waiting = callbacks_waiting
        self.callbacks_dropped = callbacks_dropped

    def collect(self) -> Iterator[Metric]:
        yield from self._rooms()
        yield from self._forwarding()
        yield from self._workers()
        yield from self._callbacks()

    def _rooms(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily(
            PREFIX + "rooms", "Rooms in progress, by room type.", labels=["type"]
        )
        for room_type in SUPPORTED_TYPES:
            rooms.add_metric([room_type.value], self.rooms.rooms[room_type.value])
        yield rooms
        yield GaugeMetricFamily(
            PREFIX + "participants",
            "Participants connected to rooms in progress.",
            value=self.rooms.participants,
        )
        for name, counts, what in (
            ("published_tracks", self.rooms.published, "Tracks published"),
            ("subscribed_tracks", self.rooms.subscribed, "Track subscriptions"),
        ):
            family = GaugeMetricFamily(
                PREFIX + name, f"{what} in rooms in progress, by kind.", labels=["kind"]
            )
            for kind in ("audio", "video", "data"):
                family.add_metric([kind], counts[kind])
            yield family

    def _forwarding(self) -> Iterator[Metric]:
        def total(name: str, help_text: str, values: Iterable[float]) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, help_text, value=sum(values))

        media = self.media
        yield total(
            "packets_forwarded",
            "RTP packets sent to subscribers.",
            (s.packets_forwarded for s in media),
        )
        yield total(
            "bytes_forwarded",
            "Encoded media bytes sent to subscribers (RTP payloads).",
            (s.bytes_forwarded for s in media),
        )
        yield total(
            "pli_received",
            "Keyframe requests (PLI, FIR) from subscribers.",
            (s.keyframe_requests_received for s in media),
        )
        yield total(
            "pli_sent",
            "PLIs sent to publishers (relayed requests, at most one a second per track).",
            (s.plis_sent for s in media),
        )
        yield total(
            "nack_received",
            "Packets subscribers NACKed.",
            (s.nacks_received for s in media),
        )
        yield total("nack_sent", "Packets NACKed to publishers.", (s.nacks_sent for s in media))
        yield total(
            "data_messages_relayed",
            "Data track messages forwarded (each once, however many subscribers).",
            (s.data_messages_relayed for s in media),
        )
        dropped = CounterMetricFamily(
            PREFIX + "data_messages_dropped",
            "Data track messages not forwarded: over VideoApp.max_data_message_bytes "
            "(too_large) or beyond VideoApp.data_messages_per_second (over_rate).",
            labels=["reason"],
        )
        dropped.add_metric(["too_large"], sum(s.data_messages_too_large for s in media))
        dropped.add_metric(["over_rate"], sum(s.data_messages_over_rate for s in media))
        yield dropped
        buckets = [0] * len(FIRST_FRAME_BUCKETS)
        for stats in media:
            for index, count in enumerate(stats.first_frame_buckets[: len(buckets)]):
                buckets[index] += count
        count = sum(s.first_frame_count for s in media)
        histogram = HistogramMetricFamily(
            PREFIX + "join_to_first_frame_seconds",
            "Seconds from a participant joining (or getting its first video subscription, "
            "if later) to the first video frame forwarded to it.",
        )
        histogram.add_metric(
            [],
            [(str(bound), float(n)) for bound, n in zip(FIRST_FRAME_BUCKETS, buckets, strict=True)]
            + [("+Inf", float(count))],
            sum_value=sum(s.first_frame_sum for s in media),
        )
        yield histogram

    def _workers(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "media_worker_up",
            "1 while the media worker process runs, 0 while it is down (restarting).",
            labels=["worker"],
        )
        for worker in self.workers:
            up.add_metric([str(worker.index)], 1 if worker.alive else 0)
        yield up
        cpu = CounterMetricFamily(
            PREFIX + "media_worker_cpu_seconds",
            "CPU time the media worker process used.",
            labels=["pid"],
        )
        for stats in self.media:
            cpu.add_metric([str(stats.pid)], stats.cpu_seconds)
        yield cpu

    def _callbacks(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            PREFIX + "status_callback_queue_depth",
            "Status callbacks waiting to be delivered.",
            value=self.callbacks_waiting,
        )
        yield CounterMetricFamily(
            PREFIX + "status_callbacks_dropped",
            "Status callbacks dropped because their room's queue was full.",
            value=self.callbacks_dropped,
        )


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    return generate_latest(registry)


class MetricsHandler(TwilioHandler):
    """Prometheus text format; REST authentication unless ``VideoApp.metrics_public``."""

    _track_activity = False  # a scrape every 15 s is not someone using the server

    async def prepare(self) -> None:  # type: ignore[override]
        if self.settings["jupyter_video"].app.metrics_public:
            await APIHandler.prepare(self)  # Jupyter's own, without TwilioHandler's check
            return
        await super().prepare()

    @allow_unauthenticated  # prepare() decides: REST credentials, or metrics_public
    async def get(self) -> None:
        context = self.settings["jupyter_video"]
        snapshot = Snapshot(
            count_rooms(context.store),
            await context.media.stats(),
            context.media.worker_status(),
            context.status_callbacks.waiting,
            context.status_callbacks.dropped_total,
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(exposition(snapshot), set_content_type=CONTENT_TYPE_LATEST)


handlers: list[tuple[str, type[web.RequestHandler]]] = [(r"/video/metrics/?", MetricsHandler)]

"""Twilio's VideoLayout: regions of the composition, and which source shows where, when.

A layout is a JSON object of named regions
(https://www.twilio.com/docs/video/api/compositions-resource#specifying-video-layouts).
A region is a rectangle (``x_pos``, ``y_pos``, ``width``, ``height``) stacked by
``z_pos``, laid out as a grid of cells (at most ``max_columns`` x ``max_rows``, minus
``cells_excluded``), showing the ``video_sources`` that match (track names or SIDs,
``*`` matching any characters) and not ``video_sources_excluded``. As sources come
and go the grid is laid out again for those shown; ``reuse`` says who is shown when
there are more sources than cells: ``none`` gives every source its own cell for the
whole composition, ``show_oldest`` keeps the earliest sources until one ends,
``show_newest`` shows the latest ones.

Everything here is arithmetic on times and rectangles: no media.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import VideoError

LAYOUT_ERROR = 20001
"""Twilio documents no code of its own for a VideoLayout it refuses (it answers HTTP
400); this is its generic "Invalid parameter", which the rest of this API uses too."""

MIN_SIZE, MAX_SIZE, MAX_PIXELS = 16, 1280, 921_600
Z_RANGE = (-99, 99)
MAX_GRID = 1000
REUSE = ("none", "show_oldest", "show_newest")
_REGION_KEYS = frozenset(
    {"x_pos", "y_pos", "z_pos", "width", "height", "max_columns", "max_rows",
     "cells_excluded", "reuse", "video_sources", "video_sources_excluded"}
)  # fmt: skip


def layout_error(message: str) -> VideoError:
    return VideoError(LAYOUT_ERROR, message, status=400)


def parse_resolution(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` within Twilio's limits (16..1280 each, at most 921,600 pixels)."""
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", text)
    if match is None:
        raise layout_error(f"Resolution must be WIDTHxHEIGHT such as 1280x720, not {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        raise layout_error(
            f"Resolution {text}: width and height must each be between {MIN_SIZE} and {MAX_SIZE}"
        )
    if width * height > MAX_PIXELS:
        raise layout_error(f"Resolution {text} has {width * height} pixels; at most {MAX_PIXELS}")
    if width % 2 or height % 2:  # 4:2:0 video needs even sizes
        raise layout_error(f"Resolution {text}: width and height must be even numbers")
    return width, height


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Region:
    """One region of a VideoLayout, its defaults filled in."""

    name: str
    rect: Rect
    z_pos: int = 0
    max_columns: int | None = None
    max_rows: int | None = None
    cells_excluded: frozenset[int] = frozenset()
    reuse: str = "show_oldest"
    video_sources: tuple[str, ...] = ()
    video_sources_excluded: tuple[str, ...] = ()

    @property
    def capacity(self) -> int | None:
        """Most sources it can show at once (None: as many as come)."""
        if self.max_columns is None or self.max_rows is None:
            return None
        cells = self.max_columns * self.max_rows
        return cells - sum(1 for cell in self.cells_excluded if cell < cells)

    def selects(self, source: SourceName) -> bool:
        return matches_any(self.video_sources, source) and not matches_any(
            self.video_sources_excluded, source
        )


def parse_layout(layout: Any, width: int, height: int) -> list[Region]:
    """The regions of a VideoLayout for a ``width`` x ``height`` composition, checked
    (a 400 that says what to fix), in drawing order (``z_pos``, then as given)."""
    if not isinstance(layout, Mapping):
        raise layout_error(
            'VideoLayout must be a JSON object of regions, e.g. {"grid": {"video_sources": ["*"]}}'
        )
    regions = [_region(str(name), spec, width, height) for name, spec in layout.items()]
    return sorted(regions, key=lambda region: region.z_pos)


def _region(name: str, spec: Any, width: int, height: int) -> Region:
    where = f"VideoLayout region {name!r}"
    if not isinstance(spec, Mapping):
        raise layout_error(f"{where} must be a JSON object")
    unknown = sorted(set(spec) - _REGION_KEYS)
    if unknown:
        raise layout_error(
            f"{where} has unknown properties {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_REGION_KEYS))}"
        )

    def integer(key: str, low: int, high: int, default: int | None) -> int | None:
        value = spec.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise layout_error(f"{where}: {key} must be a whole number, not {value!r}")
        if not low <= value <= high:
            raise layout_error(f"{where}: {key} is {value}; it must be between {low} and {high}")
        return value

    x = integer("x_pos", 0, width - MIN_SIZE, 0)
    y = integer("y_pos", 0, height - MIN_SIZE, 0)
    assert x is not None and y is not None
    w = integer("width", MIN_SIZE, width, width - x)
    h = integer("height", MIN_SIZE, height, height - y)
    assert w is not None and h is not None
    if x + w > width or y + h > height:
        raise layout_error(
            f"{where} ({w}x{h} at {x},{y}) overflows the {width}x{height} composition; "
            "regions must lie inside it"
        )
    z = integer("z_pos", *Z_RANGE, 0)
    assert z is not None
    reuse = spec.get("reuse", "show_oldest")
    if reuse not in REUSE:
        raise layout_error(f"{where}: reuse must be one of {', '.join(REUSE)}, not {reuse!r}")
    excluded = spec.get("cells_excluded", [])
    if not isinstance(excluded, list) or not all(
        isinstance(cell, int) and not isinstance(cell, bool) and cell >= 0 for cell in excluded
    ):
        raise layout_error(f"{where}: cells_excluded must be a list of cell indices (0, 1, ...)")
    region = Region(
        name=name,
        rect=Rect(x, y, w, h),
        z_pos=z,
        max_columns=integer("max_columns", 1, MAX_GRID, None),
        max_rows=integer("max_rows", 1, MAX_GRID, None),
        cells_excluded=frozenset(excluded),
        reuse=reuse,
        video_sources=_names(spec, "video_sources", where),
        video_sources_excluded=_names(spec, "video_sources_excluded", where),
    )
    if region.capacity == 0:
        raise layout_error(f"{where}: cells_excluded leaves no cell of its grid to show a source")
    return region


def _names(spec: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = spec.get(key, [])
    if isinstance(value, str):  # Twilio's libraries accept a single name too
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise layout_error(
            f"{where}: {key} must be a list of track names or SIDs (with * wildcards), "
            f"not {value!r}"
        )
    return tuple(value)


def check_sources(names: Any, what: str) -> list[str]:
    """AudioSources / AudioSourcesExcluded: track names or SIDs, ``*`` as wildcard."""
    if not all(isinstance(name, str) and name for name in names):
        raise layout_error(f"{what} must be track names or SIDs, not {names!r}")
    return list(names)


# ----------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceName:
    """What a source pattern is matched against: the track's name and SIDs."""

    track_name: str
    track_sid: str = ""
    recording_sid: str = ""


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


def matches_any(patterns: Iterable[str], source: SourceName) -> bool:
    """Whether one of Twilio's source patterns names ``source`` (``*``: any characters)."""
    names = [n for n in (source.track_name, source.track_sid, source.recording_sid) if n]
    return any(_pattern(p).fullmatch(name) for p in patterns for name in names)


# ----------------------------------------------------------------- placement


@dataclass(frozen=True)
class Interval:
    """A source's presence: seconds from the composition's origin."""

    key: str
    start: float
    end: float
    aspect: float = 4 / 3  # width / height of its video


@dataclass(frozen=True)
class Placement:
    """Where one source is drawn during a stretch of time."""

    key: str
    cell: Rect


@dataclass(frozen=True)
class Scene:
    """From ``start`` until the next scene: what each region shows (in drawing order)."""

    start: float
    placements: tuple[Placement, ...]


def schedule(regions: Sequence[Region], sources: Mapping[str, Sequence[Interval]]) -> list[Scene]:
    """The scenes of a composition: a new one each time a source starts or ends.

    ``sources`` maps a region's name to the intervals of the sources it selects.
    """
    spans = [span for region_spans in sources.values() for span in region_spans]
    times = sorted({moment for span in spans for moment in (span.start, span.end)})
    scenes: list[Scene] = []
    for moment in times:
        placements: list[Placement] = []
        for region in regions:
            placements += _place(region, sources.get(region.name, ()), moment)
        if not scenes or scenes[-1].placements != tuple(placements):
            scenes.append(Scene(moment, tuple(placements)))
    return scenes


def _place(region: Region, spans: Sequence[Interval], moment: float) -> list[Placement]:
    ordered = sorted(spans, key=lambda span: (span.start, span.key))
    capacity = region.capacity
    if region.reuse == "none":
        # Each source owns the cell of its order of arrival for the whole composition.
        slots = ordered if capacity is None else ordered[:capacity]
        shown = [(index, span) for index, span in enumerate(slots) if _live(span, moment)]
        count = len(slots)
    else:
        live = [span for span in ordered if _live(span, moment)]
        if capacity is not None and len(live) > capacity:
            live = live[:capacity] if region.reuse == "show_oldest" else live[-capacity:]
        shown = list(enumerate(live))
        count = len(live)
    if not count:
        return []
    aspect = ordered[0].aspect
    cells = grid_cells(region, count, aspect)
    return [Placement(span.key, cells[index]) for index, span in shown]


def _live(span: Interval, moment: float) -> bool:
    return span.start <= moment < span.end


def grid_cells(region: Region, count: int, aspect: float) -> list[Rect]:
    """``count`` cells of ``region``'s grid, in index order (left to right, top to
    bottom, skipping ``cells_excluded``), sized so a source of ``aspect`` shows largest."""
    best: tuple[float, int, int] | None = None
    max_columns = region.max_columns or count + len(region.cells_excluded)
    for columns in range(1, max_columns + 1):
        rows = _rows_for(region, columns, count)
        if rows is None:
            continue
        cell_w, cell_h = region.rect.width / columns, region.rect.height / rows
        shown_w = min(cell_w, cell_h * aspect)
        score = shown_w * (shown_w / aspect)
        # Larger pictures first; at equal size, fewer rows (a wide grid).
        if best is None or score > best[0] + 1e-6 or (abs(score - best[0]) <= 1e-6
                                                     and rows < best[2]):
            best = (score, columns, rows)
    if best is None:  # more sources than cells: callers cap ``count`` by the capacity
        raise ValueError(f"region {region.name} cannot hold {count} sources")
    _, columns, rows = best
    cells = []
    for index in range(columns * rows):
        if index in region.cells_excluded:
            continue
        row, column = divmod(index, columns)
        x0 = region.rect.x + math.floor(column * region.rect.width / columns)
        x1 = region.rect.x + math.floor((column + 1) * region.rect.width / columns)
        y0 = region.rect.y + math.floor(row * region.rect.height / rows)
        y1 = region.rect.y + math.floor((row + 1) * region.rect.height / rows)
        cells.append(Rect(x0, y0, x1 - x0, y1 - y0))
    return cells[:count]


def _rows_for(region: Region, columns: int, count: int) -> int | None:
    max_rows = region.max_rows or count + len(region.cells_excluded)
    for rows in range(1, max_rows + 1):
        cells = columns * rows
        if cells - sum(1 for cell in region.cells_excluded if cell < cells) >= count:
            return rows
    return None


def fit(frame_width: int, frame_height: int, cell: Rect) -> Rect:
    """The largest rectangle of the frame's aspect centred in ``cell`` (letterboxed or
    pillarboxed), on even pixels for 4:2:0 video."""
    scale = min(cell.width / frame_width, cell.height / frame_height)
    width = max(2, int(frame_width * scale) // 2 * 2)
    height = max(2, int(frame_height * scale) // 2 * 2)
    x = (cell.x + (cell.width - width) // 2) // 2 * 2
    y = (cell.y + (cell.height - height) // 2) // 2 * 2
    return Rect(x, y, width, height)

"""The recording (fixture files) and the replay clock that decides what is "current".

One timeline drives everything: the clock gives a position in the recording (seconds since
the server started, times the speed, looping); WebSocket frames are sent when the position
passes their offset, and each HTTP endpoint serves the newest snapshot at or before it.
"""

from __future__ import annotations

import bisect
import gzip
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from syi_shared.timefmt import parse_utc


class ReplayClock:
    """Position in the recording: monotonic, scaled by `speed`, wrapped at `duration_s`.

    `absolute()` keeps growing across loops (so a sender can tell "the loop wrapped" from
    "someone seeked"); `seek` re-anchors it and bumps `generation`.
    """

    def __init__(self, duration_s: float, speed: float = 1.0, start_s: float = 0.0) -> None:
        self.duration_s = duration_s
        self.speed = speed
        self.generation = 0
        self._anchor_mono = time.monotonic()
        self._anchor_abs = start_s % duration_s

    def absolute(self) -> float:
        return self._anchor_abs + (time.monotonic() - self._anchor_mono) * self.speed

    def position(self) -> float:
        return self.absolute() % self.duration_s

    def seek(self, position_s: float) -> None:
        self._anchor_abs = position_s % self.duration_s
        self._anchor_mono = time.monotonic()
        self.generation += 1

    def set_speed(self, speed: float) -> None:
        self._anchor_abs = self.absolute()
        self._anchor_mono = time.monotonic()
        self.speed = speed  # the position stays continuous: no resync needed


@dataclass
class StreamFrames:
    """One stream's recorded frames: offsets (ms) and the exact combined-stream text to send."""

    times_ms: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def latest_index(self, position_ms: float) -> int:
        """Index of the newest frame at or before the position (the previous loop's last one before the first)."""
        return bisect.bisect_right(self.times_ms, position_ms) - 1


@dataclass
class Snapshots:
    """HTTP bodies recorded at offsets; the newest at or before the position is current."""

    at_s: list[float]
    bodies: list[bytes]

    def current(self, position_s: float) -> bytes:
        return self.bodies[bisect.bisect_right(self.at_s, position_s) - 1]


class Recording:
    def __init__(self, folder: Path) -> None:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
        self.folder = folder
        self.manifest = manifest
        self.duration_s = float(manifest["duration_s"])
        self.recorded_start = parse_utc(manifest["recorded_start"]).timestamp()
        self.exchange_info: dict[str, Any] = orjson.loads((folder / manifest["binance"]["exchange_info"]).read_bytes())
        self.streams = self._load_frames(folder / manifest["binance"]["ws_frames"])
        self.http = {
            name: Snapshots([float(s["at_s"]) for s in entries], [(folder / s["file"]).read_bytes() for s in entries])
            for name, entries in manifest["http"].items()
        }

    @staticmethod
    def _load_frames(path: Path) -> dict[str, StreamFrames]:
        streams: dict[str, StreamFrames] = {}
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                frame = orjson.loads(line)
                stream = streams.setdefault(frame["stream"], StreamFrames())
                stream.times_ms.append(int(frame["at_ms"]))
                # lines are {"at_ms":..,"stream":..,"data":..}: the wire frame is the line from "stream" on
                stream.texts.append("{" + line[line.index('"stream"'):].rstrip())
        return streams

    def pairs(self) -> set[str]:
        """Pairs with recorded market data (upper case, as Binance spells symbols)."""
        return {name.split("@", 1)[0].upper() for name in self.streams}

    def latest_data(self, stream: str, position_s: float) -> dict[str, Any] | None:
        frames = self.streams.get(stream)
        if not frames:
            return None
        return orjson.loads(frames.texts[frames.latest_index(position_s * 1000)])["data"]

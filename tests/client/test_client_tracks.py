"""Local tracks produce paced frames; remote tracks keep only the newest frame."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from jupyter_video.client import (
    LocalAudioTrack,
    LocalDataTrack,
    LocalVideoTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
)
from jupyter_video.client.track import LatestSlot


def solid(level: int, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.full((*shape, 3), level, np.uint8)


async def test_video_from_frames_is_paced_at_fps_and_ends_with_its_frames() -> None:
    track = LocalVideoTrack.from_frames([solid(i) for i in range(6)], fps=50)
    start = time.monotonic()
    frames = [await track.recv() for _ in range(6)]
    assert time.monotonic() - start >= 5 / 50 * 0.9
    assert [f.to_ndarray(format="rgb24")[0, 0, 0] for f in frames] == list(range(6))
    assert [f.pts for f in frames] == [i * 90000 // 50 for i in range(6)]
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended"


async def test_video_from_an_async_generator_or_a_callable() -> None:
    async def frames():
        for i in range(3):
            yield solid(10 * i)

    track = LocalVideoTrack.from_frames(frames(), fps=100)
    assert [(await track.recv()).to_ndarray(format="rgb24")[0, 0, 0] for _ in range(3)] == [
        0, 10, 20]
    counter = iter(range(100))
    track = LocalVideoTrack.from_frames(lambda: solid(next(counter)), fps=100)
    assert (await track.recv()).to_ndarray(format="rgb24")[0, 0, 0] == 0


async def test_a_disabled_video_track_sends_black_frames_of_the_same_size() -> None:
    track = LocalVideoTrack.from_frames((solid(200) for _ in range(5)), fps=100)
    changes: list[bool] = []
    track._enabled_listeners.append(lambda: changes.append(track.is_enabled))
    track.disable()
    frame = await track.recv()
    assert (frame.height, frame.width) == (24, 32)
    assert frame.to_ndarray(format="rgb24").max() == 0
    track.enable()
    assert (await track.recv()).to_ndarray(format="rgb24").min() == 200
    assert changes == [False, True]


async def test_a_frame_that_is_not_hxwx3_uint8_is_refused() -> None:
    track = LocalVideoTrack.from_frames([np.zeros((4, 4), np.float32)])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        await track.recv()


async def test_audio_from_array_plays_20ms_frames_in_order() -> None:
    samples = np.arange(48000 // 10, dtype=np.int16)  # 100 ms, mono
    track = LocalAudioTrack.from_array(samples)
    frames = []
    with pytest.raises(MediaStreamError):
        while True:
            frames.append(await track.recv())
    assert len(frames) == 5
    assert all(f.samples == 960 and f.sample_rate == 48000 for f in frames)
    played = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert np.array_equal(played, samples)


async def test_audio_from_float_stereo_is_converted_to_int16() -> None:
    track = LocalAudioTrack.from_array(np.full((960, 2), 0.5), sample_rate=48000)
    frame: av.AudioFrame = await track.recv()
    assert frame.layout.name == "stereo"
    assert frame.to_ndarray().reshape(-1, 2)[0].tolist() == [16383, 16383]
    track.disable()
    with pytest.raises(MediaStreamError):
        await track.recv()  # the array is over


async def test_the_latest_slot_hands_out_the_newest_item_only() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert await slot.get() == (5, 4)
    waiter = asyncio.ensure_future(slot.get(after=5))
    await asyncio.sleep(0)
    assert not waiter.done()
    slot.put(5)
    slot.put(6)
    assert await waiter == (7, 6)
    slot.close()
    assert await slot.get(after=7) is None


async def test_a_slow_consumer_of_remote_video_gets_the_newest_frame_not_a_backlog() -> None:
    track = RemoteVideoTrack("MT1", "cam")
    frames = track.frames()
    track._deliver(av.VideoFrame.from_ndarray(solid(1), format="rgb24"))
    first = await anext(frames)
    for level in (2, 3, 4):  # arrive while the consumer is busy
        track._deliver(av.VideoFrame.from_ndarray(solid(level), format="rgb24"))
    newest = await anext(frames)
    assert (first[0, 0, 0], newest[0, 0, 0]) == (1, 4)
    assert track.frames_received == 4
    track._end()
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_remote_data_messages_arrive_in_order_even_before_iterating() -> None:
    track = RemoteDataTrack("MT2", "chat")
    track._deliver("early")
    messages = track.messages()
    track._deliver(b"\x00binary")
    assert await anext(messages) == "early"
    assert await anext(messages) == b"\x00binary"
    track._end()
    with pytest.raises(StopAsyncIteration):
        await anext(messages)


def test_data_track_messages_are_str_or_bytes() -> None:
    track = LocalDataTrack(name="chat")
    assert track.name == "chat" and track.kind == "data"
    track.send("not published: dropped")
    with pytest.raises(TypeError):
        track.send(42)  # type: ignore[arg-type]


def write_video(path: str, frames: int = 10) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(solid(20 * i, (48, 64)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_wav(path: str, seconds: float = 0.2) -> None:
    import wave

    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(np.zeros(int(48000 * seconds), np.int16).tobytes())


async def test_video_from_a_file_plays_its_frames_then_ends(tmp_path) -> None:
    path = str(tmp_path / "clip.mp4")
    write_video(path)
    track = LocalVideoTrack.from_file(path)
    frames = []
    with pytest.raises(MediaStreamError):
        while len(frames) < 100:
            frames.append(await asyncio.wait_for(track.recv(), 5))
    assert len(frames) == 10
    assert {(f.width, f.height) for f in frames} == {(64, 48)}
    with pytest.raises(ValueError, match="no video"):
        write_wav(str(tmp_path / "sound.wav"))
        LocalVideoTrack.from_file(str(tmp_path / "sound.wav"))


async def test_audio_from_a_file_plays_its_samples_then_ends(tmp_path) -> None:
    path = str(tmp_path / "sound.wav")
    write_wav(path)
    track = LocalAudioTrack.from_file(path)
    samples = 0
    with pytest.raises(MediaStreamError):
        while samples < 48000:
            samples += (await asyncio.wait_for(track.recv(), 5)).samples
    assert 0.15 * 48000 <= samples <= 0.25 * 48000
    track.stop()

"""Video IO: round trips, frame-accurate time ranges and fps resampling, GIF, sheets, errors."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from nanosora.video import (
    VideoError,
    contact_sheet,
    frame_indices_for_fps,
    probe,
    read_video,
    write_gif,
    write_video,
)

# Frame i of the indexed clips shows i in two grey blocks: left = (i // 16) * 12,
# right = (i % 16) * 12. Levels 12 apart survive H.264 at crf 12 (errors are a few levels).
_LEVEL = 12


def indexed_frames(num: int, height: int = 32, width: int = 64) -> np.ndarray:
    """uint8 `(num, H, W, 3)` whose frame i encodes i (see `frame_index`)."""
    frames = np.zeros((num, height, width, 3), np.uint8)
    for i in range(num):
        frames[i, :, : width // 2] = (i // 16) * _LEVEL
        frames[i, :, width // 2 :] = (i % 16) * _LEVEL
    return frames


def frame_index(frame: np.ndarray) -> int:
    """Inverse of `indexed_frames` for one decoded (possibly resized) frame."""
    h, w = frame.shape[:2]
    hi = frame[h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].mean()
    lo = frame[h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8].mean()
    return int(round(hi / _LEVEL)) * 16 + int(round(lo / _LEVEL))


def indices(video: np.ndarray) -> list[int]:
    return [frame_index(f) for f in video]


@pytest.fixture(scope="module")
def clip24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames at 24 fps (1 s)."""
    path = tmp_path_factory.mktemp("io") / "clip24.mp4"
    write_video(path, indexed_frames(24), fps=24)
    return path


@pytest.fixture(scope="module")
def clip300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 frames at 25 fps: longer than x264's 250-frame GOP, so seeking lands on a keyframe
    other than the first and the pts filtering after it is exercised."""
    path = tmp_path_factory.mktemp("io") / "clip300.mp4"
    write_video(path, indexed_frames(300), fps=25)
    return path


def smooth_frames(num: int = 12, height: int = 48, width: int = 64) -> np.ndarray:
    """A gradient background with a moving grey square (compressible, not flat).

    Grey, because a saturated square on a coloured ground has a sharp chroma edge that 4:2:0
    subsampling blurs by design (PSNR ~31 dB); that is a property of yuv420p, not of the writer.
    """
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.zeros((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, ..., 0] = (xx * 3 + t * 4) % 256
        frames[t, ..., 1] = yy * 4
        frames[t, ..., 2] = 128
        frames[t, 10:26, 4 + 3 * t : 20 + 3 * t] = 200
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def test_write_read_round_trip(tmp_path: Path) -> None:
    frames = smooth_frames()
    write_video(tmp_path / "a.mp4", frames, fps=8)
    back = read_video(tmp_path / "a.mp4")
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(back, frames) > 35
    write_video(tmp_path / "b.mp4", frames, fps=8, pix_fmt="yuv444p")
    assert psnr(read_video(tmp_path / "b.mp4"), frames) > 42


def test_probe_fields(clip24: Path) -> None:
    info = probe(clip24)
    assert info.path == str(clip24)
    assert (info.num_frames, info.width, info.height, info.codec) == (24, 64, 32, "h264")
    assert info.fps == pytest.approx(24)
    assert info.duration == pytest.approx(1.0, abs=1e-3)


def test_read_all_frames_in_order(clip300: Path) -> None:
    assert indices(read_video(clip300)) == list(range(300))


def test_time_range_is_frame_accurate(clip24: Path, clip300: Path) -> None:
    assert indices(read_video(clip24, start=0.25, end=0.75)) == list(range(6, 18))
    assert indices(read_video(clip24, start=0.5)) == list(range(12, 24))
    # Past the second keyframe (frame 250): seek, then drop frames before 11.0 s by pts.
    assert indices(read_video(clip300, start=11.0, end=11.2)) == [275, 276, 277, 278, 279]


def test_fps_resampling_picks_nearest_frames(clip24: Path, clip300: Path) -> None:
    assert indices(read_video(clip24, fps=8)) == list(range(0, 24, 3))
    assert indices(read_video(clip24, start=0.25, end=0.75, fps=8)) == [6, 9, 12, 15]
    assert indices(read_video(clip24, fps=12)) == list(range(0, 24, 2))
    # Upsampling repeats frames; the exact ties (k/48 between two frames) go to the earlier one.
    assert indices(read_video(clip24, fps=48)) == [i // 2 for i in range(48)]
    # 25 -> 10 fps is not an integer ratio: targets 0, 0.1, 0.2 s -> frames 0, 2.5->2, 5, 7.5->7.
    assert indices(read_video(clip300, fps=10, max_frames=6)) == [0, 2, 5, 7, 10, 12]
    assert indices(read_video(clip300, start=10.0, fps=5, max_frames=3)) == [250, 255, 260]


def test_frame_indices_for_fps_matches_reader(clip24: Path) -> None:
    times = np.arange(24) / 24
    for fps in (5.0, 8.0, 10.0, 30.0):
        expected = frame_indices_for_fps(times, fps).tolist()
        assert indices(read_video(clip24, fps=fps)) == expected, fps


def test_max_frames(clip24: Path) -> None:
    assert indices(read_video(clip24, max_frames=5)) == [0, 1, 2, 3, 4]


def test_resize(clip24: Path) -> None:
    small = read_video(clip24, size=(16, 32))
    assert small.shape == (24, 16, 32, 3)
    assert indices(small) == list(range(24))
    big = read_video(clip24, size=(64, 128), max_frames=2)
    assert big.shape == (2, 64, 128, 3)


def test_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    frames = smooth_frames(num=4, height=33, width=47)
    write_video(tmp_path / "odd.mp4", frames, fps=8)
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (4, 34, 48, 3)
    assert psnr(back[:, :33, :47], frames) > 35
    assert np.abs(back[:, 33].astype(int) - back[:, 32].astype(int)).mean() < 4


def test_gif_round_trip_is_exact_for_few_colours(tmp_path: Path) -> None:
    frames = indexed_frames(20)
    write_gif(tmp_path / "a.gif", frames, fps=8)
    back = read_video(tmp_path / "a.gif")
    np.testing.assert_array_equal(back, frames)  # <= 256 colours: palette is exact, GIF lossless
    assert b"NETSCAPE2.0" in (tmp_path / "a.gif").read_bytes()  # the looping extension


def test_gif_many_colours_is_close(tmp_path: Path) -> None:
    frames = smooth_frames()
    write_gif(tmp_path / "b.gif", frames, fps=10)
    back = read_video(tmp_path / "b.gif")
    assert back.shape == frames.shape
    assert psnr(back, frames) > 28


def test_contact_sheet(tmp_path: Path) -> None:
    videos = [indexed_frames(17, 64, 64), indexed_frames(9, 32, 48)]
    sheet = contact_sheet(tmp_path / "s.png", videos, ["first", "second"], frames_per_video=5)
    gap, label_h, cell = 2, 16, 128
    assert sheet.shape == (2 * (label_h + cell + gap) + gap, 5 * (cell + gap) + gap, 3)
    on_disk = cv2.imread(str(tmp_path / "s.png"))
    np.testing.assert_array_equal(cv2.cvtColor(on_disk, cv2.COLOR_BGR2RGB), sheet)
    # Columns are evenly sampled: first and last frame of video 0 (scaled 2x, nearest).
    y0, x_last = gap + label_h, gap + 4 * (cell + gap)
    assert frame_index(sheet[y0 : y0 + cell, gap : gap + cell]) == 0
    assert frame_index(sheet[y0 : y0 + cell, x_last : x_last + cell]) == 16
    no_labels = contact_sheet(tmp_path / "t.png", videos[:1], frames_per_video=3, scale=1)
    assert no_labels.shape == (64 + 2 * gap, 3 * (64 + gap) + gap, 3)


def test_error_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match=r"nope\.mp4.*no such file"):
        read_video(path)
    with pytest.raises(VideoError, match="no such file"):
        probe(path)


def test_error_zero_length(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoError, match=r"empty\.mp4.*zero-length"):
        probe(tmp_path / "empty.mp4")


def test_error_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"garbage\.mp4"):
        read_video(path)
    with pytest.raises(VideoError, match=r"garbage\.mp4"):
        probe(path)


def test_error_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoError, match=r"audio\.wav.*no video stream"):
        read_video(path)


def test_error_empty_time_range(clip24: Path) -> None:
    with pytest.raises(VideoError, match=r"clip24\.mp4.*empty time range"):
        read_video(clip24, start=0.5, end=0.5)
    with pytest.raises(VideoError, match=r"clip24\.mp4.*no frames in time range"):
        read_video(clip24, start=5.0)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "must be uint8"),
        (np.zeros((8, 8, 3), np.uint8), r"shape \(T, H, W, 3\)"),
        (np.zeros((2, 8, 8, 4), np.uint8), r"shape \(T, H, W, 3\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "non-empty"),
    ],
)
def test_error_bad_frames(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(VideoError, match=rf"bad\.mp4.*{message}"):
        write_video(tmp_path / "bad.mp4", frames, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"x\.mp4.*encoding"):
        write_video(tmp_path / "x.mp4", indexed_frames(3), fps=8, codec="no_such_codec")
    assert list(tmp_path.iterdir()) == []

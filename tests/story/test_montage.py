"""Montage: timeline arithmetic, cross-fades, subtitles, cards, audio, H.264 output."""

from __future__ import annotations

import av
import numpy as np
import pytest

from nanosora.story.montage import (
    MontageConfig,
    compose,
    fit_frame,
    make_film,
    plan_timeline,
    retime,
    srt_time,
    subtitle_cues,
)
from nanosora.story.schema import Shot, StoryError
from nanosora.video.io import probe, read_video, write_video


def shot(i: int, **kw) -> Shot:
    return Shot(id=f"s{i}", description="d", prompt="a red circle moving left", **kw)


def test_timeline_cuts_and_fades():
    cfg = MontageConfig(fps=10, fade=0.5, title_seconds=1, end_seconds=1)
    shots = [
        shot(0, duration=2, transition="fade"),
        shot(1, duration=2),
        shot(2, duration=1.5, transition="fade"),
    ]
    t = plan_timeline(shots, cfg)
    assert [(p.kind, p.start, p.frames, p.fade_in) for p in t] == [
        ("title", 0, 10, 0),
        ("shot", 5, 20, 5),  # fades in over the title's last 5 frames
        ("shot", 25, 20, 0),  # a cut: starts where the previous ends
        ("shot", 40, 15, 5),
        ("end", 50, 10, 5),
    ]


def test_fade_never_outlasts_a_segment():
    cfg = MontageConfig(fps=10, fade=5, title_seconds=0, end_seconds=0)
    t = plan_timeline([shot(0, duration=1), shot(1, duration=0.3, transition="fade")], cfg)
    assert t[0].fade_in == 0 and t[1].fade_in == 2  # at most min(10, 3) - 1 frames


def test_compose_blends_only_the_overlap():
    a, b = np.full((4, 2, 2, 3), 0, np.uint8), np.full((3, 2, 2, 3), 200, np.uint8)
    frames = np.stack(list(compose([(lambda: a, 0), (lambda: b, 2)])))
    assert len(frames) == 4 + 3 - 2
    assert [int(f[0, 0, 0]) for f in frames] == [0, 0, round(200 / 3), round(400 / 3), 200]


def test_retime_and_fit():
    clip = np.arange(17)[:, None, None, None].repeat(3, -1).astype(np.uint8) * np.ones(
        (1, 4, 8, 3), np.uint8
    )
    slow = retime(clip, 34)
    assert len(slow) == 34 and slow[0, 0, 0, 0] == 0 and slow[-1, 0, 0, 0] == 16
    assert (np.diff(slow[:, 0, 0, 0].astype(int)) >= 0).all()
    boxed = fit_frame(np.full((4, 8, 3), 255, np.uint8), 16, 16)  # 2:1 into a square: letterbox
    assert boxed.shape == (16, 16, 3) and boxed[0].max() == 0 and boxed[8].min() == 255


def test_subtitle_cues_and_srt_times():
    cfg = MontageConfig(fps=10, fade=0.5, title_seconds=1, end_seconds=1)
    shots = [
        shot(0, duration=2, subtitle="One"),
        shot(1, duration=2, transition="fade"),
        shot(2, dialogue="Three"),
    ]
    cues = subtitle_cues(shots, plan_timeline(shots, cfg), cfg.fps)
    assert cues == [(1.0, 2.5, "One"), (4.5, 6.0, "Three")]  # ends where the next shot fades in
    assert srt_time(3725.5) == "01:02:05,500"


def test_config_checks():
    with pytest.raises(StoryError, match="even"):
        MontageConfig(width=255)


@pytest.fixture
def clips(tmp_path):
    """Three 17-frame 64x64 clips: solid red, green, blue."""
    paths = []
    for i, rgb in enumerate([(230, 40, 40), (40, 200, 70), (50, 90, 240)]):
        frames = np.zeros((17, 64, 64, 3), np.uint8) + np.array(rgb, np.uint8)
        paths.append(write_video(tmp_path / f"c{i}.mp4", frames, fps=8))
    return paths


@pytest.mark.parametrize(("name", "codec"), [("tone.wav", "pcm_s16le"), ("tone.m4a", "aac")])
def test_film_with_cards_subtitles_and_audio(tmp_path, clips, sine, name, codec):
    cfg = MontageConfig(width=128, height=96, fps=12, fade=0.5, title_seconds=1, end_seconds=1,
                        burn_subtitles=True, audio=str(sine(name, codec)))  # fmt: skip
    shots = [shot(0, subtitle="Red"), shot(1, transition="fade"), shot(2, subtitle="Blue été")]
    film, srt = make_film(shots, clips, "Colours", "Three of them.", tmp_path / "film.mp4", cfg)
    info = probe(film)
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 128, 96, 12.0)
    total = plan_timeline(shots, cfg)[-1]
    assert info.num_frames == total.start + total.frames == 12 + 24 + 24 - 6 + 24 + 12 - 6
    with av.open(str(film)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.rate == 48000
        assert abs(float(audio.duration * audio.time_base) - 3.0) < 0.1  # the 3 s tone, not padded
    frames = read_video(film)
    assert frames[0].max() > 128 and frames[0].mean() < 30  # title card: white text on black
    red = (
        frames[12 + 3, 5:40, 30:98].reshape(-1, 3).mean(0)
    )  # shot 1, inside the pillarbox, above the subtitle
    assert frames[12 + 3, :, :12].max() < 20  # 64x64 into 128x96: black pillars
    assert red[0] > 180 and red[1] < 90
    white = lambda f: (f[-24:, 20:108].min(axis=-1) > 200).sum()  # noqa: E731
    assert white(frames[12 + 3]) > 20 and white(frames[45]) == 0  # "Red" burned in; shot 2 has none
    assert srt.read_text(encoding="utf-8").startswith("1\n00:00:01,000 --> 00:00:02,500\nRed\n")
    assert "Blue été" in srt.read_text(encoding="utf-8")


def test_bad_audio_file_is_a_clear_error(tmp_path, clips):
    (tmp_path / "noise.mp3").write_bytes(b"not audio at all")
    cfg = MontageConfig(audio=str(tmp_path / "noise.mp3"))
    with pytest.raises(StoryError, match="noise.mp3 cannot be decoded"):
        make_film([shot(0)], clips[:1], "T", "L", tmp_path / "film.mp4", cfg)
    assert not (tmp_path / "film.mp4").exists()

"""`nanosora story`: the command runs the pipeline and reports bad input without a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from nanosora.cli import app

runner = CliRunner()


def test_story_command_runs_and_stops_where_asked(tmp_path, tiny_model):
    out = tmp_path / "film.mp4"
    args = ["story", "a purple square climbs", "-o", str(out), "--model", str(tiny_model), "--shots", "2",
            "--rerolls", "0", "--size", "64x64", "--fps", "8", "--stop-after", "shots"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "a purple square moving up" in (tmp_path / "film.story" / "shots.json").read_text()
    r = runner.invoke(app, [*args[:-2], "--resume", "--burn-subtitles", "--title-seconds", "0",
                            "--animate", "t2v"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "animation: text-to-video" in r.output
    assert out.is_file() and out.with_suffix(".srt").is_file()


def test_story_command_bad_input(tmp_path):
    for args, message in [
        (["story", "-o", str(tmp_path / "f.mp4")], "give a PREMISE"),
        (["story", "x", "--size", "big"], "--size takes WIDTHxHEIGHT"),
        (["story", "x", "--stop-after", "film"], "--stop-after must be one of"),
        (["story", "x", "--animate", "v2v"], "--animate must be one of auto, i2v, t2v"),
        (["story", "x", "-o", str(tmp_path / "f.mp4"), "--writer", "chat", "--chat-base-url", "",
          "--chat-model", "m"], "--chat-base-url"),
    ]:  # fmt: skip
        r = runner.invoke(app, args, env={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""})
        assert r.exit_code == 2 and message in r.output, r.output

"""The scenes benchmark: grading a folder of videos with a prompt file (report.json, report.html),
and the benchmark command on the shipped model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nanosora.evaluate import scenes as bench
from nanosora.evaluate.scenes import bench_scenes, grade_videos, ground_truth
from nanosora.pipeline import SHIPPED_MODEL, load_vae
from nanosora.shapes import grader, scenes, world
from nanosora.shapes.grammar import canonical_caption
from nanosora.video.io import write_video


def _folder(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Ground-truth clips of three categories with right, wrong and held-out prompts."""
    videos = tmp_path / "videos"
    rows = []
    picks = [
        ("numeracy", scenes.held_out()["numeracy"][8]),  # three red squares (held out)
        ("spatial", None),
        ("actions", None),
    ]
    for i, (cat, comp) in enumerate(picks):
        rng = world.clip_rng(3, i)
        comp = comp or scenes.composition_for(rng, cat, "train")  # type: ignore[arg-type]
        objects, events = scenes.realise(rng, comp)
        frames = scenes.render(scenes.Scene(comp, "", "train", objects, events))
        write_video(videos / f"{i:04d}.mp4", frames, fps=8)  # type: ignore[arg-type]
        rows.append({"path": f"{i:04d}.mp4", "text": canonical_caption(comp), "comp": comp})
    # The third clip again under a held-out phrasing, and the first under a wrong count.
    rows.append({"path": "0002.mp4", "text": canonical_caption(rows[2]["comp"], "heldout", 1)})
    rows.append({"path": "0000.mp4", "text": "two red squares"})
    return videos, rows


def test_grade_a_folder_with_a_prompt_manifest(tmp_path: Path) -> None:
    videos, rows = _folder(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"path": r["path"], "text": r["text"]}) + "\n" for r in rows))  # fmt: skip
    report = json.loads(grade_videos(videos, prompts, tmp_path / "out").read_text())
    clips = report["clips"]
    assert [c["passed"] for c in clips] == [True, True, True, True, False]
    assert [c["group"] for c in clips] == ["heldout_composition", "trained", "trained", "heldout_phrasing", "trained"]  # fmt: skip
    assert clips[4]["reason"] == "count 3 in 17/17 frames, expected 2"
    assert [c["kind"] for c in clips] == ["", "", "", "", "count"]
    assert report["summary"]["numeracy"]["all"] == {"score": 0.5, "passed": 1, "n": 2}
    assert report["summary"]["all"]["trained"]["n"] == 3
    # Failures by kind: per category present (empty where nothing failed), and over all.
    assert report["failures"] == {"numeracy": {"count": 1}, "spatial": {}, "actions": {}, "all": {"count": 1}}  # fmt: skip
    page = (tmp_path / "out/report.html").read_text()
    # The score table, then per category a grid: one figure per prompt, clip, verdict, reason.
    assert page.count("<figure") == 5 and page.count('<video src="data:video/mp4;base64,') == 5
    assert re.findall(r'<h2 id="(\w+)">', page) == ["numeracy", "spatial", "actions"]
    assert page.count("<b>FAIL</b>") == 1 and "count 3 in 17/17 frames, expected 2" in page
    assert "held-out compositions" in page and "held-out phrasings" in page
    assert "<h2>What failed</h2>" in page and "<th>count</th>" in page


def test_grade_a_folder_with_a_text_prompt_file(tmp_path: Path) -> None:
    videos, rows = _folder(tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(r["text"] for r in rows[:3]) + "\n")
    report = json.loads(grade_videos(videos, prompts, tmp_path / "out").read_text())
    assert report["summary"]["all"]["all"]["score"] == 1.0
    prompts.write_text("\n".join(r["text"] for r in rows[:2]))
    with pytest.raises(ValueError, match="has 2 prompts but .* has 3 videos"):
        grade_videos(videos, prompts, tmp_path / "out")
    prompts.write_text("a red circle\nthree red squares\nthree red squares\n")
    with pytest.raises(ValueError, match="row 0: 'a red circle' matches no template"):
        grade_videos(videos, prompts, tmp_path / "out")


def test_unreadable_and_missing_videos(tmp_path: Path) -> None:
    videos, rows = _folder(tmp_path)
    (videos / "0001.mp4").write_bytes(b"not a video")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"path": r["path"], "text": r["text"]}) + "\n" for r in rows[:3]))  # fmt: skip
    clips = json.loads(grade_videos(videos, prompts, tmp_path / "out").read_text())["clips"]
    assert not clips[1]["passed"] and clips[1]["reason"].startswith("unreadable video")
    assert clips[1]["kind"] == "unreadable"
    prompts.write_text(json.dumps({"path": "nope.mp4", "text": rows[0]["text"]}) + "\n")
    with pytest.raises(FileNotFoundError, match="row 0: video .*nope.mp4 not found"):
        grade_videos(videos, prompts, tmp_path / "out")


@pytest.mark.shipped_model
def test_bench_scenes_on_the_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    report = json.loads(bench_scenes(None, out, seeds=1, categories=("single", "numeracy"), per_group=1).read_text())  # fmt: skip
    clips = report["clips"]
    assert len(clips) == 6 and {c["group"] for c in clips} == {"trained", "heldout_composition", "heldout_phrasing"}  # fmt: skip
    single = [c for c in clips if c["category"] == "single"]
    assert single[0]["prompt"] == "a red circle moving left" and single[0]["passed"]
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == list(range(6))
    first = out / "videos" / rows[0]["path"]
    stamp = first.stat().st_mtime_ns
    again = json.loads(bench_scenes(None, out, seeds=1, categories=("single", "numeracy"), per_group=1).read_text())  # fmt: skip
    assert first.stat().st_mtime_ns == stamp  # resumed: nothing generated again
    assert again["summary"] == report["summary"]
    assert report["summary"]["all"]["all"]["score"] == pytest.approx(
        sum(c["passed"] for c in clips) / 6, abs=1e-4
    )


def test_ground_truth_realises_its_prompt() -> None:
    """The world's own clip of a suite prompt passes the grader, in every category."""
    for cat in scenes.CATEGORIES:
        prompt = scenes.suite((cat,))[0]
        frames = ground_truth(prompt.text, 7)
        assert frames.shape == (17, 64, 64, 3)
        assert grader.grade_prompt(frames, prompt.text).passed, prompt.text


def test_bench_scenes_grades_a_vaes_reconstructions(tmp_path: Path, monkeypatch) -> None:
    """--vae: the shipped VAE reconstructs single objects well enough to pass; a VAE that
    decodes to black passes nothing, each clip failing with the grader's reason."""
    vae_dir = SHIPPED_MODEL / "vae"
    report = json.loads(bench_scenes(None, tmp_path / "a", seeds=1, categories=("single",), per_group=2, vae=vae_dir).read_text())  # fmt: skip
    assert len(report["clips"]) == 6 and all(c["passed"] for c in report["clips"])
    assert "reconstructions" in report["title"]

    broken = load_vae(vae_dir)
    broken.decode = lambda z: torch.full((len(z), 3, 17, 64, 64), -1.0)  # black frames
    monkeypatch.setattr(bench, "load_vae", lambda path: broken)
    report = json.loads(bench_scenes(None, tmp_path / "b", seeds=1, categories=("single",), per_group=2, vae=vae_dir).read_text())  # fmt: skip
    assert not any(c["passed"] for c in report["clips"])
    assert all(c["reason"] for c in report["clips"])


def test_bench_scenes_sampler_overrides_reach_the_pipeline(tmp_path: Path, monkeypatch) -> None:
    """--cfg, --cfg-interval, --eta and --steps replace the pipeline's sampler settings for the
    run (the title names them); the VAE mode refuses them."""
    seen = []
    real = bench.Pipeline.generate

    def spy(self, prompts, **kw):
        seen.append(self.cfg)
        return real(self, prompts, **kw)

    monkeypatch.setattr(bench.Pipeline, "generate", spy)
    sampler = {"steps": 3, "cfg_scale": 2.5, "cfg_interval": (0.0, 1.0), "eta": 0.0}
    report = json.loads(bench_scenes(None, tmp_path / "b", seeds=1, categories=("single",), per_group=1, **sampler).read_text())  # fmt: skip
    assert len(report["clips"]) == 3 and seen
    for key, value in sampler.items():
        assert all(getattr(cfg, key) == value for cfg in seen), key
    assert "cfg_scale=2.5" in report["title"] and "eta=0.0" in report["title"]
    with pytest.raises(ValueError, match="cfg_scale"):
        bench_scenes(None, tmp_path / "c", seeds=1, categories=("single",), per_group=1, vae=SHIPPED_MODEL / "vae", cfg_scale=2.0)  # fmt: skip

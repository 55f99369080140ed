"""The issue's target with the shipped shapes model: a 6-shot film where every shot's clip passes
the shapes probe for the prompt it was planned from. Runs whenever the shipped model is installed.
(The < 60 s timing is measured in the report, not asserted here.)"""

from __future__ import annotations

import pytest

from nanosora.generate import SHIPPED_MODEL

pytestmark = [
    pytest.mark.shipped_model,
    pytest.mark.skipif(
        not (SHIPPED_MODEL / "pipeline.yaml").is_file(), reason="shipped model not installed"
    ),
]

PREMISE = (
    "A red ball falls into the dark. Then it rises again, and a blue square flees to the left."
)


def test_six_shot_film_every_shot_passes_the_probe(tmp_path):
    from nanosora.shapes.captions import parse_prompt
    from nanosora.shapes.probe import probe_video
    from nanosora.story import StoryConfig, main
    from nanosora.story.schema import ShotList, load
    from nanosora.video.io import probe

    film = main(StoryConfig(premise=PREMISE, out=str(tmp_path / "film.mp4")))
    assert probe(film).codec == "h264"
    shots = load(ShotList, tmp_path / "film.story" / "shots.json").shots
    assert len(shots) == 6
    readings = {s.id: probe_video(tmp_path / "film.story" / "clips" / f"{s.id}.mp4") for s in shots}
    wrong = {s.id: (s.prompt, readings[s.id]) for s in shots
             if (readings[s.id].color, readings[s.id].shape, readings[s.id].direction) != parse_prompt(s.prompt)}  # fmt: skip
    assert not wrong, wrong  # issue 6's target: every shot reads as planned

"""Validate the grader both ways on ground truth: true clips pass, near misses are rejected.

Each clip is drawn from the scenes world (every composition, held-out ones too), written as an
mp4 with `video.io.write_video` (libx264, crf 12, as datasets are) and read back with
`read_video`; the grader reads it once and judges it against its own composition and against
every near miss (`scenes.near_misses`: one colour, shape, size, count, relation, direction, verb
or role changed). A rejected near miss must also name the failure kind that its one change
implies (`expected_kind`: a changed colour is "wrong colour", the opposite direction "reversed").
The tests run this on a few hundred clips per category, bench/grade.py on a thousand.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nanosora.shapes import grader, scenes, world
from nanosora.shapes.grammar import Category, Composition, describe
from nanosora.video.io import read_video, write_video


@dataclass
class Validation:
    """Counts for one category, with the first failures of each kind as examples."""

    category: str
    clips: int = 0
    passed: int = 0
    near_misses: int = 0
    rejected: int = 0
    kinds_agreed: int = 0  # rejected near misses named with the kind their change implies
    failures: list[str] = field(default_factory=list)  # "caption: reason"
    accepted: list[str] = field(default_factory=list)  # "caption ~ near miss"
    misnamed: list[str] = field(default_factory=list)  # "caption ~ near miss: got, expected"
    reasons: Counter = field(default_factory=Counter)

    @property
    def pass_rate(self) -> float:
        return self.passed / max(self.clips, 1)

    @property
    def reject_rate(self) -> float:
        return self.rejected / max(self.near_misses, 1)

    @property
    def kind_rate(self) -> float:
        return self.kinds_agreed / max(self.rejected, 1)

    def add(self, other: Validation) -> None:
        """Merge counts of the same category (from another worker)."""
        self.clips += other.clips
        self.passed += other.passed
        self.near_misses += other.near_misses
        self.rejected += other.rejected
        self.kinds_agreed += other.kinds_agreed
        self.failures += other.failures
        self.misnamed += other.misnamed
        self.accepted += other.accepted
        self.reasons.update(other.reasons)


def validate(category: Category, start: int, stop: int, seed: int = 0) -> Validation:
    """Clips ``start..stop-1`` of ``category`` (clip i from `world.clip_rng(seed, i)`)."""
    out = Validation(category)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        for i in range(start, stop):
            scene = scenes.sample_scene(world.clip_rng(seed, i), category, "all")
            write_video(path, scenes.render(scene), fps=world.FPS)  # type: ignore[arg-type]
            reading = grader.read(read_video(path))
            verdict = grader.judge(reading, scene.composition)
            out.clips += 1
            out.passed += verdict.passed
            if not verdict.passed:
                out.reasons[verdict.reason.split(" (")[0]] += 1
                if len(out.failures) < 5:
                    out.failures.append(f"{scene.caption}: {verdict.reason}")
            for miss in scenes.near_misses(scene.composition):
                out.near_misses += 1
                verdict = grader.judge(reading, miss)
                if verdict.passed:
                    if len(out.accepted) < 5:
                        out.accepted.append(f"{scene.caption} ~ {describe(miss)}")
                    continue
                out.rejected += 1
                want = expected_kind(scene.composition, miss)
                out.kinds_agreed += verdict.kind == want
                if verdict.kind != want and len(out.misnamed) < 5:
                    out.misnamed.append(f"{scene.caption} ~ {describe(miss)}: {verdict.kind}, expected {want}")  # fmt: skip
    return out


def expected_kind(truth: Composition, miss: Composition) -> str:
    """The failure kind (`grader.FAILURE_KINDS`) of a clip of ``truth`` graded as the near miss
    ``miss``, implied by their one difference."""
    if miss.things != truth.things:
        if len(miss.things) != len(truth.things):
            return "count"
        changed = [(t, m) for t, m in zip(truth.things, miss.things) if t != m]
        if len(changed) != 1 and truth.category != "numeracy":
            return "incomplete"  # roles swapped: the other object does not act
        t, m = changed[0]
        return "wrong colour" if t.color != m.color else "wrong shape" if t.shape != m.shape else "wrong size"  # fmt: skip
    match truth.category:
        case "single" | "motion" | "spatial":
            (want, got), *_ = [(m, t) for t, m in zip(truth.words, miss.words) if t != m]
            return "reversed" if grader.OPPOSITE[want] == got else "wrong direction"
        case "dynamic":
            if truth.words[0] != "turns" and miss.words[0] != "turns":
                return "reversed"  # grows <-> shrinks
            if truth.words[0] == "turns":
                return "wrong change"  # another end colour, or a size change where colour changes
            return "unchanged"  # a colour change asked of a clip where only the size changes
    return "incomplete"  # another action or verb


def validate_chunk(job: tuple[Category, int, int, int]) -> Validation:
    """`validate` on one ``(category, start, stop, seed)`` job (for process pools)."""
    return validate(*job)

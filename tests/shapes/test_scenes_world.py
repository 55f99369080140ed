"""The scenes world: the one-object preset is bit-identical to today's world, every category's
ground truth shows its composition, held-out compositions stay out of training, datasets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanosora.shapes import scenes, world
from nanosora.shapes.grammar import CATEGORIES, RELATIONS, Composition, parse
from nanosora.video import read_video

# sha256 prefixes of `world.render` frames and of the spec fields + captions of clips 0..199 of
# (seed, split), recorded from the one-object world before the scenes world existed.
REFERENCE = {
    (0, "train"): ("9906ce9c996a668e", "55c69f20f1ac397d"),
    (1, "heldout"): ("0a6ebe8a9edc3ee3", "f4a78a21c41af384"),
    (2, "all"): ("19e5af4061db2907", "e70aef76347975a7"),
}


def _digests(seed: int, split: str, through_scenes: bool) -> tuple[str, str]:
    frames, specs = hashlib.sha256(), hashlib.sha256()
    for i in range(200):
        s = world.sample_spec(world.clip_rng(seed, i), split)  # type: ignore[arg-type]
        if through_scenes:
            scene = scenes.sample_scene(world.clip_rng(seed, i), "single", split)  # type: ignore[arg-type]
            assert scene.caption == s.caption and scene.split == s.split
            frames.update(scenes.render(scene).tobytes())  # type: ignore[union-attr]
        else:
            frames.update(world.render(s).tobytes())
        fields = (s.color, s.shape, s.direction, s.size_px, s.speed, s.x0, s.y0, s.caption)
        specs.update(repr(fields).encode())
    return frames.hexdigest()[:16], specs.hexdigest()[:16]


@pytest.mark.parametrize(("seed", "split"), list(REFERENCE))
def test_one_object_world_unchanged_and_is_the_single_preset(seed: int, split: str) -> None:
    assert _digests(seed, split, through_scenes=False) == REFERENCE[(seed, split)]
    assert _digests(seed, split, through_scenes=True) == REFERENCE[(seed, split)]


def test_single_dataset_matches_the_shapes_dataset(tmp_path: Path) -> None:
    a = world.generate_dataset(tmp_path / "a", num=4, seed=5, split="all", progress=False)
    b = scenes.generate_scenes(tmp_path / "b", num=4, categories=("single",), seed=5, split="all", progress=False)  # fmt: skip
    ma, mb = pd.read_parquet(a / "manifest.parquet"), pd.read_parquet(b / "manifest.parquet")
    assert list(ma["text"]) == list(mb["text"]) and list(ma["split"]) == list(mb["split"])
    for pa, pb in zip(ma["path"], mb["path"]):
        _same_video(read_video(a / pa), read_video(b / pb))


def _same_video(a: np.ndarray, b: np.ndarray) -> None:
    """The same frames, encoded twice: libx264 here sometimes writes one of two bitstreams for the
    same frames (seen: 4 to 11 levels apart in under 3% of values, a mean under 0.1 level), so
    the decoded clips must agree within half a level on average. Another clip, even the same
    objects one pixel over, is more than a level apart on average."""
    assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 0.5


def _scenes(category: str, num: int, seed: int = 0, split: str = "all") -> list[scenes.Scene]:
    rng = np.random.default_rng([seed, CATEGORIES.index(category)])
    return [scenes.sample_scene(rng, category, split) for _ in range(num)]  # type: ignore[arg-type]


def _gap(a: scenes.ObjectTruth, b: scenes.ObjectTruth) -> np.ndarray:
    """Per-frame gap (px) between two unrotated boxes: negative when they overlap."""
    gx = np.maximum(a.x - (b.x + b.side), b.x - (a.x + a.side))
    gy = np.maximum(a.y - (b.y + b.side), b.y - (a.y + a.side))
    return np.maximum(gx, gy)


@pytest.mark.parametrize("category", CATEGORIES)
def test_truth_matches_pixels_and_composition(category: str) -> None:
    for scene in _scenes(category, 60):
        frames, visible = scenes.render(scene, visibility=True)
        comp = scene.composition
        assert frames.shape == (17, 64, 64, 3) and visible.shape == (len(scene.objects), 17)
        assert parse(scene.caption)[0] == comp or category == "single"
        assert scene.split == ("heldout" if scenes.is_held_out(comp) else "train")
        palette = {tuple(c) for c in scenes.COLORS.values()} | {(0, 0, 0)}
        codes = frames.astype(np.int32) @ [1 << 16, 1 << 8, 1]
        assert np.isin(codes, [r << 16 | g << 8 | b for r, g, b in palette]).all()  # exact colours
        for i, obj in enumerate(scene.objects):
            k, r, c = scenes.object_masks(obj)
            assert len(k) and np.bincount(k, minlength=17).min() > 0  # on canvas every frame
            rgb = np.array([scenes.COLORS[name] for name in obj.color])
            whole = visible[i][k] == 1  # frames where nothing covers it show all of it
            assert (frames[k, r, c][whole] == rgb[k[whole]]).all()
            if obj.angle.any():
                continue
            assert (obj.x >= 0).all() and (obj.x + obj.side <= 64).all()
            assert (obj.y >= 0).all() and (obj.y + obj.side <= 64).all()
        if category != "interactions":
            assert (visible == 1).all()  # nothing hides anything
        if category == "numeracy" or category == "attributes":
            objs = scene.objects
            assert all((_gap(a, b) >= scenes.GAP).all() for j, a in enumerate(objs) for b in objs[:j])  # fmt: skip
        if category == "attributes":
            for thing, obj in zip(comp.things, scene.objects):
                lo, hi = scenes.SIDES[thing.size]
                assert lo <= obj.side[0] <= hi and (obj.shape, obj.color[0]) == thing[1::-1]


def _centre(obj: scenes.ObjectTruth) -> np.ndarray:
    return np.stack([obj.x + obj.side / 2, obj.y + obj.side / 2], axis=1)


def test_spatial_and_motion_truth() -> None:
    for scene in _scenes("spatial", 100):
        a, b = (_centre(o) for o in scene.objects)
        d = a - b
        rel = scene.composition.words[0]
        axis, sign = {"left": (0, -1), "right": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]
        assert rel in RELATIONS and (sign * d[:, axis] > 2 * np.abs(d[:, 1 - axis])).all()
    for scene in _scenes("motion", 100):
        assert (_gap(*scene.objects) >= 2).all()
        for obj, direction in zip(scene.objects, scene.composition.words):
            step = np.diff(_centre(obj), axis=0)
            vx, vy = world.VELOCITY[direction]
            assert np.allclose(step / np.linalg.norm(step, axis=1, keepdims=True), [vx, vy])
            assert 1.5 <= np.linalg.norm(step[0]) <= 2.5


def test_spatial_pairs_about_the_centre_keep_their_relation() -> None:
    rng = np.random.default_rng(0)
    mids, anywhere = [], []
    for _ in range(100):
        scene = scenes.sample_scene(rng, "spatial", "all", spatial_centre=6)
        a, b = (_centre(o) for o in scene.objects)
        mids.append((a + b)[world.NUM_FRAMES // 2] / 2)
        axis, sign = {"left": (0, -1), "right": (0, 1), "above": (1, -1), "below": (1, 1)}[scene.composition.words[0]]  # fmt: skip
        assert (sign * (a - b)[:, axis] > 2 * np.abs((a - b)[:, 1 - axis])).all()
        assert all(((o.x >= 0) & (o.x + o.side <= 64) & (o.y >= 0) & (o.y + o.side <= 64)).all() for o in scene.objects)  # fmt: skip
    for scene in _scenes("spatial", 100):
        a, b = (_centre(o) for o in scene.objects)
        anywhere.append((a + b)[world.NUM_FRAMES // 2] / 2)
    assert np.abs(np.array(mids) - 32).max() <= 6.01
    assert np.abs(np.array(anywhere) - 32).max() > 12  # the world's own pairs go anywhere
    # The other categories draw as before: the option touches spatial clips only.
    one = scenes.sample_scene(np.random.default_rng(1), "motion", "all", spatial_centre=6)
    two = scenes.sample_scene(np.random.default_rng(1), "motion", "all")
    assert one.caption == two.caption and np.array_equal(one.objects[0].x, two.objects[0].x)
    with pytest.raises(ValueError, match="spatial_centre must be in"):
        scenes.generate_scenes("unused", num=1, spatial_centre=40)


def test_dynamic_and_actions_truth() -> None:
    for scene in _scenes("dynamic", 100):
        (obj,), comp = scene.objects, scene.composition
        if comp.words[0] == "turns":
            (event,) = scene.events
            k = event["frame"]
            assert set(obj.color[:k]) == {comp.things[0].color} and set(obj.color[k:]) == {comp.words[1]}  # fmt: skip
        else:
            growth = obj.side[-1] / obj.side[0]
            assert growth >= 1.6 if comp.words[0] == "grows" else growth <= 1 / 1.6
            assert np.ptp(_centre(obj), axis=0).max() < 1e-9  # about a fixed centre
    for scene in _scenes("actions", 200):
        (obj,), action = scene.objects, scene.composition.words[0]
        if action.startswith("bounce_"):
            (event,) = scene.events
            wall, k = event["wall"], event["frame"]
            edge = {"left": obj.x, "right": 64 - obj.x - obj.side, "top": obj.y, "bottom": 64 - obj.y - obj.side}[wall]  # fmt: skip
            assert edge[k] == pytest.approx(0) and edge.argmin() == k and 5 <= k <= 11
            assert edge[0] >= 12 and edge[-1] >= 12
        elif action == "spin":
            assert obj.shape != "circle" and abs(obj.angle[-1]) >= 12 * 16
            gx, gy = obj.centroid()
            assert np.ptp(gx) < 1e-9 and np.ptp(gy) < 1e-9
        else:
            assert obj.y.min() >= 5 and obj.y[0] == obj.y[-1] and obj.y[0] - obj.y.min() >= 9.9


def test_interactions_truth() -> None:
    for scene in _scenes("interactions", 200):
        frames, visible = scenes.render(scene, visibility=True)
        a, b = scene.objects
        verb = scene.composition.words[0]
        assert a.color[0] != b.color[0]
        if verb.startswith("push_"):
            (event,) = scene.events
            k = event["frame"]
            assert _gap(a, b)[k] == pytest.approx(0, abs=1e-9)  # touching, face to face
            assert (_gap(a, b)[:k] > 0).all() and np.allclose(_gap(a, b)[k:], 0)
            assert np.ptp(b.x[: k + 1]) == 0 and np.ptp(b.y[: k + 1]) == 0  # still until hit
            moved = _centre(b)[-1] - _centre(b)[k]
            vx, vy = world.VELOCITY[verb.removeprefix("push_")]
            assert moved @ [vx, vy] >= 7 and abs(moved @ [vy, vx]) < 1e-9
        else:
            (hidden,) = scenes.occlusion_events(visible)
            if verb == "behind":
                assert hidden["object"] == 0 and hidden["min_visible"] <= 0.3
            else:
                assert hidden["object"] == 1 and (visible[0] == 1).all()
            assert _gap(a, b)[0] >= 2 and _gap(a, b)[-1] >= 2  # clear of B at both ends


def test_held_out_compositions() -> None:
    for category in CATEGORIES:
        held = scenes.held_out()[category]
        assert len(held) == (8 if category == "single" else 16)
        assert len({scenes.key(c) for c in held}) == len(held)
        assert all(scenes.is_held_out(c) for c in held)
        train = _scenes(category, 400, seed=1, split="train")
        assert not any(scenes.is_held_out(s.composition) for s in train)
        assert {s.split for s in train} == {"train"}
        # Every part of a held-out composition still occurs in training.
        parts = {p for s in train for t in s.composition.things for p in t} | {
            w for s in train for w in s.composition.words
        }
        assert {p for c in held for t in c.things for p in t} | {w for c in held for w in c.words} <= parts  # fmt: skip
        drawn = {scenes.key(s.composition) for s in _scenes(category, 200, seed=2, split="heldout")}
        assert drawn == {scenes.key(c) for c in held}
    # An attributes clip is held out when it contains a held-out pair.
    pair = scenes.held_out()["attributes"][0]
    third = scenes.Thing("white", "square", "big")
    assert scenes.is_held_out(Composition("attributes", (third, *pair.things[::-1])))


def test_near_misses_differ_in_one_thing() -> None:
    for category in CATEGORIES:
        for scene in _scenes(category, 30, seed=3):
            comp = scene.composition
            misses = scenes.near_misses(comp)
            assert misses and all(m.category == category and m != comp for m in misses)
            for m in misses:
                if category == "numeracy":  # one thing, repeated: its count or one attribute
                    assert (len(m.things) != len(comp.things)) + sum(a != b for a, b in zip(m.things[0], comp.things[0])) == 1  # fmt: skip
                    continue
                changed = sum(a != b for a, b in zip(m.things, comp.things)) + (m.words != comp.words)  # fmt: skip
                swapped = m.things == comp.things[::-1] and len(comp.things) == 2
                assert changed == 1 or swapped, (comp, m)


def test_a_dataset_resumes_only_as_it_was_drawn(tmp_path: Path) -> None:
    scenes.generate_scenes(tmp_path, num=2, categories=("spatial",), progress=False)
    scenes.generate_scenes(tmp_path, num=3, categories=("spatial",), progress=False)  # resumes
    # Clips drawn anywhere would be kept beside the truth of centred ones: refused, nothing written.
    before = (tmp_path / "truth.jsonl").read_text()
    with pytest.raises(ValueError, match=r"spatial_centre=None, not spatial_centre=6 \(.*generation.json\)"):  # fmt: skip
        scenes.generate_scenes(tmp_path, num=3, categories=("spatial",), progress=False, spatial_centre=6)  # fmt: skip
    with pytest.raises(ValueError, match="seed=0, not seed=1"):
        scenes.generate_scenes(tmp_path, num=3, categories=("spatial",), seed=1, progress=False)
    assert (tmp_path / "truth.jsonl").read_text() == before


def test_generate_scenes_dataset(tmp_path: Path) -> None:
    out = scenes.generate_scenes(tmp_path / "a", num=10, seed=3, progress=False)
    m = pd.read_parquet(out / "manifest.parquet")
    truth = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    assert len(m) == len(truth) == 10 and list(m["category"]) == [CATEGORIES[i % 8] for i in range(10)]  # fmt: skip
    for row, t in zip(m.itertuples(), truth):
        frames = read_video(out / row.path)
        assert frames.shape == (17, 64, 64, 3) and row.text == t["caption"]
        assert json.loads(row.composition) == t["composition"] and row.num_objects == len(t["objects"])  # fmt: skip
        assert parse(row.text)[0].category == row.category
        for obj in t["objects"]:
            assert all(len(obj[k]) == 17 for k in ("x", "y", "side", "angle", "visible", "color"))
    b = scenes.generate_scenes(tmp_path / "b", num=10, seed=3, workers=2, progress=False)
    pd.testing.assert_frame_equal(m, pd.read_parquet(b / "manifest.parquet"))
    assert (out / "truth.jsonl").read_text() == (b / "truth.jsonl").read_text()
    clip = out / m["path"][4]
    clip.write_bytes(b"broken")  # a resumed run rewrites broken clips and keeps the rest
    scenes.generate_scenes(out, num=10, seed=3, progress=False)
    _same_video(read_video(clip), read_video(b / m["path"][4]))
    with pytest.raises(ValueError, match="unknown categories"):
        scenes.generate_scenes(tmp_path / "c", num=1, categories=("nonsense",))  # type: ignore[arg-type]

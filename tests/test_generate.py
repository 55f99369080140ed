"""The generation pipeline and its CLI: save/load, determinism, bad input, the shipped model."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from nanosora.cli import app
from nanosora.config import DiTConfig, PipelineConfig, TextEncoderConfig, VAEConfig
from nanosora.generate import prepare_frames
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import load_text_encoder
from nanosora.models.vae import VideoVAE
from nanosora.pipeline import SHIPPED_MODEL, Pipeline, PromptError, check_prompt
from nanosora.shapes.probe import probe_frames
from nanosora.video.io import probe, read_video, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4))
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2))
    with torch.no_grad():  # a zero-initialised output layer would make every seed look alike
        dit.out.weight.normal_(0, 0.1)
    pipe = Pipeline(vae, dit, load_text_encoder(TextEncoderConfig()), PipelineConfig(steps=3))
    path = tmp_path_factory.mktemp("pipe")
    pipe.save(path, dtype=torch.float32)
    return path


def test_save_load_round_trip_in_the_shipped_dtype(tmp_path):
    """A model's video before saving equals the loaded model's, with weights stored as shipped."""
    torch.manual_seed(1)
    vae = VideoVAE(VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4))
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2))
    with torch.no_grad():
        dit.out.weight.normal_(0, 0.1)
        vae.latent_mean.normal_(0, 0.3)  # latent statistics are kept in float32 when saved
        vae.latent_std.uniform_(0.5, 2.0)
        for module in (vae, dit):  # weights the shipped float16 holds exactly
            for name, p in module.state_dict().items():
                if p.dtype.is_floating_point and "latent_" not in name:
                    p.copy_(p.half().float())
    pipe = Pipeline(vae, dit, load_text_encoder(TextEncoderConfig()), PipelineConfig(steps=3))
    prompts = ["a red circle moving left", "a blue box slides up"]
    before = pipe.generate(prompts, seed=3)
    pipe.save(tmp_path)  # the default dtype is the one the shipped model uses
    stored = load_file(str(tmp_path / "transformer" / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert (
        load_file(str(tmp_path / "vae" / "model.safetensors"))["latent_std"].dtype == torch.float32
    )
    after = Pipeline.load(tmp_path).generate(prompts, seed=3)
    assert before.shape == (2, 17, 64, 64, 3) and before.dtype == np.uint8
    assert np.array_equal(before, after)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_seed_and_batch_independence(tiny, eta):
    """Also with fresh noise at every step (eta > 0): it comes from each prompt's own seed."""
    pipe = Pipeline.load(tiny)
    one = pipe.generate(["a blue square moving up"], seed=5, eta=eta)
    batch = pipe.generate(
        ["a red circle moving left", "a blue square moving up"], seeds=[9, 5], eta=eta
    )
    # Same noise and prompt: equal up to float rounding of batched kernels (a level or two).
    assert np.abs(one[0].astype(int) - batch[1].astype(int)).max() <= 3
    assert np.array_equal(one[0], pipe.generate(["a blue square moving up"], seed=5, eta=eta)[0])
    assert not np.array_equal(
        one[0], pipe.generate(["a blue square moving up"], seed=6, eta=eta)[0]
    )


def test_eta_comes_from_the_pipeline_and_can_be_overridden(tiny, tmp_path):
    pipe = Pipeline.load(tiny)
    assert pipe.cfg.eta == 0.0  # a pipeline.yaml without the key samples deterministically
    euler = pipe.generate(["a red circle moving left"], seed=2)
    stochastic = pipe.generate(["a red circle moving left"], seed=2, eta=1.0)
    assert not np.array_equal(euler, stochastic)
    text = (tiny / "pipeline.yaml").read_text()
    for name in ("vae", "transformer"):
        (tmp_path / name).symlink_to(tiny / name)
    (tmp_path / "pipeline.yaml").write_text(text + "eta: 1.0\n")
    assert np.array_equal(
        Pipeline.load(tmp_path).generate(["a red circle moving left"], seed=2), stochastic
    )
    (tmp_path / "pipeline.yaml").write_text(text + "eta: 1.5\n")
    with pytest.raises(ValueError, match="eta must be in \\[0, 1\\]"):
        Pipeline.load(tmp_path)
    with pytest.raises(ValueError, match="eta must be in"):
        pipe.generate(["a red circle moving left"], eta=-0.1)


def test_other_frame_counts(tiny):
    pipe = Pipeline.load(tiny)
    assert pipe.generate(["x"], num_frames=1).shape[1] == 1  # text-to-image from the same model
    assert pipe.generate(["x"], num_frames=9).shape[1] == 9
    with pytest.raises(ValueError, match="4k\\+1"):
        pipe.generate(["x"], num_frames=16)


@pytest.mark.parametrize(
    "prompt, message",
    [("", "empty"), ("   ", "empty"), ("a" * 600, "characters"), ("red\x00circle", "control")],
)
def test_bad_prompts(prompt, message):
    with pytest.raises(PromptError, match=message):
        check_prompt(prompt)


def test_unknown_vocabulary_warns():
    assert check_prompt("a red circle moving left", "shapes") == []
    (warning,) = check_prompt("a majestic dragon", "shapes")
    assert "no colour, no shape, no direction" in warning


def test_cli_generate(tiny, tmp_path):
    out = tmp_path / "v.mp4"
    r = runner.invoke(
        app, ["generate", "a red circle moving left", "-o", str(out), "--model", str(tiny)]
    )
    assert r.exit_code == 0, r.output
    info = probe(out)
    assert (info.num_frames, info.width, info.height) == (17, 64, 64)
    base = ["generate", "a red circle moving left", "--model", str(tiny)]
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "e.mp4"), "--eta", "1"])
    assert r.exit_code == 0, r.output
    assert not np.array_equal(read_video(out), read_video(tmp_path / "e.mp4"))
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "x.mp4"), "--eta", "2"])
    assert r.exit_code != 0 and "eta must be in [0, 1]" in r.output


def test_cli_prompt_file(tiny, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle moving left\n\na blue square moving up\n")
    r = runner.invoke(
        app,
        [
            "generate",
            "--prompts",
            str(tmp_path / "p.txt"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny),
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000.mp4", "0001.mp4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "-o", "x.mp4"], "empty"),
        (["a red circle", "--model", "/no/such/dir"], "does not exist"),
        (["a red circle", "--num-frames", "16"], "4k\\+1"),
        (["--prompts", "/no/such/file.txt"], "not found"),
        (["a red circle", "--image", "/no/such.png"], "does not exist"),
        (["a red circle", "--image", "notes.txt"], "not a readable image"),
        (["a red circle", "--video", "clip.mp4"], "go together"),
        (["a red circle", "--extend", "4"], "go together"),
    ],
)
def test_cli_errors_are_clear(args, message, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not pixels")
    if "--model" not in args:
        args = [*args, "--model", str(tiny)]
    r = runner.invoke(app, ["generate", *args])
    assert r.exit_code == 2
    assert message.replace("\\", "") in r.output.replace("\n", " ") or message in r.output


def test_not_a_pipeline_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="pipeline.yaml"):
        Pipeline.load(tmp_path)


def test_shipped_model_follows_prompts():
    """The committed model draws what it is asked, including a held-out composition."""
    assert (SHIPPED_MODEL / "pipeline.yaml").is_file(), (
        "the shipped model is missing from the package"
    )
    pipe = Pipeline.load()
    targets = [
        ("red", "circle", "left"),
        ("blue", "square", "up"),
        ("green", "triangle", "right"),
        ("yellow", "triangle", "right"),
    ]  # the last is held out from training
    videos = pipe.generate([f"a {c} {s} moving {d}" for c, s, d in targets], seed=0)
    read = [probe_frames(v) for v in videos]
    assert all((r.color, r.shape, r.direction) == t for r, t in zip(read, targets)), read


def test_shipped_model_animates_an_image():
    """Image-to-video with the shipped model: the given first frame survives (>= 30 dB) and the object moves the way the prompt says, keeping colour and shape."""
    from nanosora.shapes.world import ClipSpec, render

    spec = ClipSpec("green", "square", "right", 18, 2.0, 8.0, 20.0, "")
    first = render(spec)[:1]
    pipe = Pipeline.load()
    video = pipe.generate(["a green square moving right"], seeds=[5], prefix=first)[0]
    mse = np.mean((video[0].astype(float) - first[0].astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 30
    r = probe_frames(video)
    assert (r.color, r.shape, r.direction) == ("green", "square", "right"), r
    assert r.displacement[0] > 10  # it really travels


def test_prefix_frames_are_kept(tiny):
    """Image-to-video: the given frame's latent stays clean, so the first output frame is the
    VAE's reconstruction of the image; longer prefixes (extension) likewise."""
    pipe = Pipeline.load(tiny)
    first = pipe.generate(["a red circle moving left"], seed=3)[0]
    for k, eta in ((1, 0.0), (5, 0.0), (1, 1.0), (5, 1.0)):
        out = pipe.generate(["a blue square moving up"], seed=4, prefix=first[:k], eta=eta)[0]
        x = torch.from_numpy(first[:k]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        rec = pipe.vae.decode(pipe.vae.encode(x)).clamp(-1, 1)
        rec = ((rec + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()
        assert np.abs(out[:k].astype(int) - rec.astype(int)).max() <= 1
        free = pipe.generate(["a blue square moving up"], seed=4)[0]
        assert np.abs(out[k:].astype(int) - free[k:].astype(int)).max() > 0


@pytest.mark.parametrize(
    "prefix, message",
    [
        (np.zeros((2, 64, 64, 3), np.uint8), "4k\\+1"),
        (np.zeros((1, 32, 32, 3), np.uint8), "prepare_frames"),
        (np.zeros((17, 64, 64, 3), np.uint8), "nothing to generate"),
        (np.zeros((1, 64, 64, 3), np.float32), "uint8"),
    ],
)
def test_bad_prefix(tiny, prefix, message):
    with pytest.raises(ValueError, match=message):
        Pipeline.load(tiny).generate(["a red circle moving left"], prefix=prefix)


def test_prepare_frames_converts_with_notices(capsys):
    grey = prepare_frames(np.full((32, 48), 200, np.uint8), 64, 64, "grey.png")
    assert grey.shape == (1, 64, 64, 3) and (grey == 200).all()
    rgba = prepare_frames(np.zeros((64, 64, 4), np.uint8), 64, 64, "a.png")
    assert rgba.shape == (1, 64, 64, 3)
    out = capsys.readouterr().out
    assert "greyscale" in out and "resized to 64x64" in out and "alpha" in out
    with pytest.raises(ValueError, match="8-bit"):
        prepare_frames(np.zeros((64, 64, 3), np.float32), 64, 64, "f.tiff")


def test_cli_image_and_extension(tiny, tmp_path):
    import cv2

    img = np.zeros((96, 80, 3), np.uint8)
    cv2.circle(img, (40, 48), 12, (0, 0, 255), -1)  # BGR red
    cv2.imwrite(str(tmp_path / "first.png"), img)
    r = runner.invoke(app, ["generate", "a red circle moving left", "--model", str(tiny),
                            "--image", str(tmp_path / "first.png"), "-o", str(tmp_path / "i2v.mp4")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "resized" in r.output and probe(tmp_path / "i2v.mp4").num_frames == 17
    write_video(tmp_path / "clip.mp4", read_video(tmp_path / "i2v.mp4")[:9], fps=8)
    r = runner.invoke(app, ["generate", "a red circle moving left", "--model", str(tiny),
                            "--video", str(tmp_path / "clip.mp4"), "--extend", "12",
                            "-o", str(tmp_path / "ext.mp4")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert probe(tmp_path / "ext.mp4").num_frames == 21

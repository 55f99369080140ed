"""The VAE objective's object terms: weighting and the object-colour error."""

from __future__ import annotations

import torch

from nanosora.config import TrainConfig, VAELossConfig, VAETrainConfig
from nanosora.train.vae import (
    colour_schedule,
    gradient_error,
    object_colour_error,
    object_frames,
    object_weights,
    vae_loss,
)


def clips_with_objects() -> torch.Tensor:
    """(4, 3, 5, 16, 16) black clips; clip i holds a 4x4 object of colour i in frames 0..i."""
    x = torch.full((4, 3, 5, 16, 16), -1.0)
    colours = torch.tensor(
        [[0.8, -0.7, -0.6], [-0.5, 0.9, -0.4], [0.1, 0.2, 0.95], [1.0, 1.0, 1.0]]
    )
    for i, c in enumerate(colours):
        x[i, :, : i + 1, 4:8, 6:10] = c.view(3, 1, 1, 1)
    return x


def test_colour_error_is_the_mean_object_colour_difference():
    x = clips_with_objects()
    assert object_colour_error(x, x).item() == 0.0
    rec = x.clone()
    obj = x.amax(dim=1, keepdim=True) > -0.85
    rec[:, 0:1][obj] -= 0.3  # every object's red channel off by 0.3; background untouched
    # the mean over object frames and the three channels: 0.3 / 3
    assert abs(object_colour_error(rec, x).item() - 0.1) < 1e-6
    # measured on the target's object pixels only: a wrong background costs nothing here
    grey_background = torch.where(obj, x, torch.zeros_like(x))
    assert object_colour_error(grey_background, x).item() < 1e-6
    # an all-background batch contributes zero, not NaN
    empty = torch.full((2, 3, 5, 16, 16), -1.0)
    assert object_colour_error(empty + 0.5, empty).item() == 0.0


def test_gradient_error_charges_blur_at_edges_not_offsets():
    x = clips_with_objects()
    w = object_weights(x, 4.0)
    assert gradient_error(x, x, w, w.mean()).item() == 0.0
    # a uniform offset leaves every neighbouring difference as it was: no gradient error
    assert gradient_error(x + 0.3, x, w, w.mean()).item() < 1e-6
    # a box blur over H and W keeps the object's total but smears its edges and corners
    blurred = torch.nn.functional.avg_pool3d(
        x, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False
    )
    blur_err = gradient_error(blurred, x, w, w.mean()).item()
    assert blur_err > 0.05
    # the term joins the loss (and its logged parts) only when weighted
    mean, logvar = torch.zeros(4, 8, 2, 2, 2), torch.zeros(4, 8, 2, 2, 2)
    plain, parts = vae_loss(blurred, x, mean, logvar, VAELossConfig(object_weight=4.0))
    assert "gradient" not in parts
    weighted, parts = vae_loss(
        blurred, x, mean, logvar, VAELossConfig(object_weight=4.0, gradient=2.0)
    )
    assert abs(parts["gradient"] - blur_err) < 1e-6
    assert torch.allclose(weighted, plain + 2.0 * blur_err, rtol=1e-5)


def test_shares_of_a_batch_average_to_the_whole_batch_loss():
    """Ranks and micro-batches see equal shares; with the global normalisers, the mean of the
    shares' losses is the batch's loss, so data parallelism stays exact with the colour term."""
    x = clips_with_objects()
    torch.manual_seed(0)
    rec = x + 0.2 * torch.randn_like(x)
    mean, logvar = torch.zeros(4, 8, 2, 2, 2), torch.zeros(4, 8, 2, 2, 2)
    cfg = VAELossConfig(object_weight=4.0, colour=2.0)
    whole, parts = vae_loss(rec, x, mean, logvar, cfg)
    assert parts["colour"] > 0
    w_mean = object_weights(x, cfg.object_weight).mean().item()
    f_mean = object_frames(x).mean().item()
    halves = [
        vae_loss(rec[s], x[s], mean[s], logvar[s], cfg, w_mean, f_mean)[0]
        for s in (slice(0, 2), slice(2, 4))
    ]
    assert torch.allclose((halves[0] + halves[1]) / 2, whole, rtol=1e-6)
    # without the global normalisers the halves disagree (clip 3 has more object frames)
    own = [vae_loss(rec[s], x[s], mean[s], logvar[s], cfg)[0] for s in (slice(0, 2), slice(2, 4))]
    assert not torch.allclose((own[0] + own[1]) / 2, whole, rtol=1e-4)


def test_colour_weight_decays_over_steps_or_the_time_budget():
    cfg = VAETrainConfig(
        train=TrainConfig(steps=1000, minutes=10.0),
        loss=VAELossConfig(colour=4.0, colour_decay=True),
    )
    weight = [
        colour_schedule(cfg, step, {"elapsed": elapsed}).loss.colour
        for step, elapsed in ((0, 0.0), (250, 60.0), (500, 0.0), (100, 450.0), (1000, 0.0))
    ]
    assert weight == [4.0, 3.0, 2.0, 1.0, 0.0]  # by steps, or by the budget when that runs faster
    steady = VAETrainConfig(loss=VAELossConfig(colour=4.0))
    assert colour_schedule(steady, 900, {"elapsed": 0.0}).loss.colour == 4.0

"""Rectified-flow math: endpoints, targets, shifts, CFG, and an exact Euler integration."""

import math

import pytest
import torch

from nanosora.diffusion.flow import (
    add_noise,
    classifier_free_guidance,
    frame_timesteps,
    guidance_active,
    object_weights,
    resolution_shift,
    sample_condition_frames,
    sample_schedule,
    sample_timesteps,
    shift_timesteps,
    stochastic_sample,
    velocity_target,
)


def test_endpoints():
    x0, noise = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    torch.testing.assert_close(add_noise(x0, noise, torch.zeros(3)), x0)
    torch.testing.assert_close(add_noise(x0, noise, torch.ones(3)), noise)


def test_velocity_is_the_path_derivative():
    x0, noise = torch.randn(2, 5), torch.randn(2, 5)
    s, h = torch.full((2,), 0.3), 1e-3
    numeric = (add_noise(x0, noise, s + h) - add_noise(x0, noise, s - h)) / (2 * h)
    torch.testing.assert_close(numeric, velocity_target(x0, noise), atol=1e-3, rtol=1e-3)


def euler(velocity, noise, schedule):
    """Reference Euler integration of dx/ds = v from schedule[0] to schedule[-1]."""
    x = noise
    for s, s_next in zip(schedule[:-1], schedule[1:]):
        x = x + (s_next - s) * velocity(x, s.expand(x.shape[0]))
    return x


def test_euler_is_exact_on_a_straight_path():
    """With the true velocity, the deterministic sampler (eta 0: Euler steps) lands exactly on
    x0 whatever the schedule."""
    x0, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    v = velocity_target(x0, noise)
    for steps, shift in [(1, 1.0), (7, 3.0), (25, 1.5)]:
        out = stochastic_sample(lambda x, s: v, noise, sample_schedule(steps, shift), 0.0)
        torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_schedule_and_shift():
    sched = sample_schedule(10, 3.0)
    assert sched[0] == 1.0 and sched[-1] == 0.0 and torch.all(sched[1:] < sched[:-1])
    s = torch.linspace(0, 1, 11)
    assert torch.all(shift_timesteps(s, 3.0) >= s)  # shift > 1 moves toward noise
    torch.testing.assert_close(shift_timesteps(s, 1.0), s)
    assert resolution_shift(3.0, 320, 80) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        sample_schedule(0)


def test_timestep_sampling_is_shifted_and_seeded():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = sample_timesteps(20000, generator=g())
    shifted = sample_timesteps(20000, shift=3.0, generator=g())
    assert 0 < plain.min() and plain.max() < 1
    assert abs(plain.mean().item() - 0.5) < 0.01  # logit-normal(0, 1) is symmetric
    assert shifted.mean() > 0.65  # most mass at high noise
    torch.testing.assert_close(
        sample_timesteps(5, generator=g()), sample_timesteps(5, generator=g())
    )


def test_cfg():
    cond, uncond = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    # Scale 1 is exactly the conditional prediction, on every channel.
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(
        classifier_free_guidance(cond, uncond, 3.0), uncond + 3 * (cond - uncond)
    )


def test_guidance_interval():
    assert guidance_active(1.0) and guidance_active(0.01)  # default: everywhere but s = 0
    assert guidance_active(0.8, (0.75, 1.0)) and not guidance_active(0.75, (0.75, 1.0))
    assert not guidance_active(0.2, (0.75, 1.0))
    for bad in ((0.8, 0.5), (-0.1, 1.0), (0.5, 1.5), (0.5, 0.5)):
        with pytest.raises(ValueError, match="guidance interval"):
            guidance_active(0.9, bad)


def test_per_frame_noise_and_frame_masks():
    x0, noise = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    levels = frame_timesteps(torch.tensor([0.5, 0.9]), torch.tensor([1, 3]), 4)
    torch.testing.assert_close(levels, torch.tensor([[0, 0.5, 0.5, 0.5], [0, 0, 0, 0.9]]))
    xs = add_noise(x0, noise, levels)
    torch.testing.assert_close(xs[0, :, 0], x0[0, :, 0])  # given frames stay clean
    torch.testing.assert_close(xs[1, :, 3], 0.1 * x0[1, :, 3] + 0.9 * noise[1, :, 3])
    # Same levels everywhere: identical to the per-clip form.
    torch.testing.assert_close(
        add_noise(x0, noise, torch.tensor([[0.3] * 4, [0.6] * 4])),
        add_noise(x0, noise, torch.tensor([0.3, 0.6])),
    )


def test_sample_condition_frames():
    g = torch.Generator().manual_seed(0)
    assert sample_condition_frames(100, 5, 0.0, g).eq(0).all()
    k = sample_condition_frames(4000, 5, 1.0, g)
    assert k.min() >= 1 and k.max() <= 4  # always something left to generate
    assert 0.45 < k.eq(1).float().mean() < 0.6  # half image-to-video (+ the 2..4 draws' none)
    mixed = sample_condition_frames(4000, 5, 0.3, g)
    assert 0.25 < mixed.gt(0).float().mean() < 0.35
    assert sample_condition_frames(10, 1, 1.0, g).eq(0).all()  # an image: nothing to give
    assert sample_condition_frames(10, 2, 1.0, g).eq(1).all()


def _gaussian_velocity(mu: float, sd: float):
    """The exact velocity field E[noise - x0 | x_s] when data is N(mu, sd^2) per element."""

    def velocity(x, s):
        s = s.view(-1, *[1] * (x.dim() - 1))
        var = (1 - s) ** 2 * sd**2 + s**2  # of x_s
        return -mu + (s - (1 - s) * sd**2) / var * (x - (1 - s) * mu)

    return velocity


def test_stochastic_sample_at_eta_0_is_euler_bit_for_bit():
    noise = torch.randn(3, 2, 2, 4, 4)
    velocity = lambda x, s: torch.tanh(x) * s.view(-1, 1, 1, 1, 1) - 0.3  # noqa: E731
    schedule = sample_schedule(9, 3.0)
    assert torch.equal(
        stochastic_sample(velocity, noise, schedule, 0.0), euler(velocity, noise, schedule)
    )


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_stochastic_sample_follows_its_update_on_gaussian_data(eta):
    """With the exact velocity of Gaussian data every step is linear in x, so the samples' variance
    follows a recursion we can compute: the sampler must match it, keep the mean, and at eta = 0
    (Euler) converge to the data's std. At eta > 0 the recursion is narrower: the bias the
    docstring names, pinned here so that a change of the update shows."""
    mu, sd, steps = 0.5, 0.3, 200
    schedule = sample_schedule(steps)
    var = 1.0  # of the starting noise, at s = 1
    for s, s_next in zip(schedule[:-1].tolist(), schedule[1:].tolist()):
        k = (1 - s) * sd**2 / ((1 - s) ** 2 * sd**2 + s**2)  # x0 estimate = mu + k (x - (1-s) mu)
        if s_next == 0.0 or eta == 0.0:
            slope, fresh = (k if s_next == 0.0 else 1 + (s_next - s) * (1 - k) / s), 0.0
        else:  # (1 - s') x0 + s' (sqrt(1 - eta^2) e + eta z), e = (x - (1 - s) x0) / s
            e_slope = (1 - (1 - s) * k) / s
            slope = (1 - s_next) * k + s_next * math.sqrt(1 - eta**2) * e_slope
            fresh = (s_next * eta) ** 2
        var = slope**2 * var + fresh
    torch.manual_seed(0)
    noise = torch.randn(1, 100_000)
    out = stochastic_sample(_gaussian_velocity(mu, sd), noise, schedule, eta)
    assert abs(out.mean().item() - mu) < 0.01
    assert out.std().item() == pytest.approx(math.sqrt(var), rel=0.01)
    if eta == 0.0:
        assert math.sqrt(var) == pytest.approx(sd, rel=0.02)
    else:
        assert math.sqrt(var) < 0.97 * sd  # too narrow, as documented
        torch.manual_seed(1)  # and the noise is really renewed: other draws, other samples
        again = stochastic_sample(_gaussian_velocity(mu, sd), noise, schedule, eta)
        assert (again - out).abs().mean() > 0.01


def test_stochastic_sample_per_row_generators_and_kept_elements():
    velocity = _gaussian_velocity(0.0, 1.0)
    noise, schedule = torch.randn(3, 2, 3, 2, 2), sample_schedule(10, 3.0)

    def rows(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    both = stochastic_sample(velocity, noise, schedule, 1.0, rows([5, 6, 7]))
    alone = stochastic_sample(velocity, noise[1:2], schedule, 1.0, rows([6]))
    torch.testing.assert_close(both[1:2], alone)  # a row's noise does not depend on the others
    keep = (torch.arange(3) < 1).view(1, 1, -1, 1, 1)  # the first frame is given
    kept = stochastic_sample(velocity, noise, schedule, 1.0, rows([5, 6, 7]), keep)
    assert torch.equal(kept[:, :, :1], noise[:, :, :1])
    assert not torch.equal(kept[:, :, 1:], noise[:, :, 1:])
    with pytest.raises(ValueError, match="eta must be in"):
        stochastic_sample(velocity, noise, schedule, 1.5)
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        stochastic_sample(velocity, noise, schedule, 0.5, rows([1, 2]))


def test_object_weights_find_objects_on_a_plain_background():
    torch.manual_seed(0)
    bg = torch.randn(2, 8, 1, 1, 1)  # each clip's background latent
    x0 = bg + 0.1 * torch.randn(2, 8, 5, 8, 8)  # background with the VAE's small jitter
    x0[0, :, :, 2:4, 3:5] += 3.0  # an object: 4 cells in every frame of clip 0
    x0[1, :, 2, 6, 6] -= 3.0  # an object cell in one frame of clip 1
    w = object_weights(x0, extra=4.0)
    assert w.shape == (2, 1, 5, 8, 8)
    on = torch.zeros_like(w, dtype=torch.bool)
    on[0, :, :, 2:4, 3:5] = True
    on[1, :, 2, 6, 6] = True
    # in each frame, object cells weigh 5x the others; every frame averages 1
    for b, t in [(0, 0), (0, 4), (1, 2)]:
        frame, objects = w[b, 0, t], on[b, 0, t]
        assert torch.allclose(frame[objects] / frame[~objects].max(), torch.tensor(5.0))
        assert torch.allclose(frame[~objects], frame[~objects].min())
    assert torch.allclose(w.mean(dim=(3, 4)), torch.ones(2, 1, 5))
    # frames without an object are left uniform; extra=0 weighs every cell alike
    assert torch.allclose(w[1, :, 0], torch.ones(1, 8, 8))
    assert torch.equal(object_weights(x0, extra=0.0), torch.ones_like(w))
    # a near miss: a cell that moved less than the threshold stays background
    x0[1, :, 0, 0, 0] += 0.5
    assert torch.allclose(object_weights(x0, 4.0)[1, :, 0], torch.ones(1, 8, 8))

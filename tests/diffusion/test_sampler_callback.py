"""The sampler's optional per-step callback: what it is given, and that it can stop sampling."""

import numpy as np
import pytest
import torch

from nanosora.diffusion.flow import sample_schedule, stochastic_sample
from nanosora.pipeline import Pipeline


def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return 0.5 * x + 0.3  # x0 = x - s v: at s = 1, 0.5 x - 0.3; at the end, the sample


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_callback_sees_every_step_and_the_last_estimate_is_the_sample(eta):
    noise = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    schedule = sample_schedule(6, shift=3.0)
    seen: list[tuple[int, torch.Tensor]] = []
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = stochastic_sample(velocity, noise, schedule, eta, gens,
                            callback=lambda i, x0: seen.append((i, x0.clone())))  # fmt: skip
    plain = stochastic_sample(
        velocity, noise, schedule, eta, [torch.Generator().manual_seed(i) for i in range(2)]
    )
    assert [i for i, _ in seen] == list(range(6))
    assert torch.equal(out, plain)  # watching does not change the result
    # the last step lands on s = 0 without fresh noise: its estimate is the sample itself
    assert torch.allclose(seen[-1][1], out, atol=1e-6)
    assert torch.allclose(
        seen[0][1], 0.5 * noise - 0.3, atol=1e-6
    )  # step 0 sees x = noise at s = 1


def test_an_exception_in_the_callback_stops_sampling():
    calls = []

    def counted(x, s):
        calls.append(float(s[0]))
        return torch.zeros_like(x)

    def stop(i, x0):
        if i == 2:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        stochastic_sample(counted, torch.zeros(1, 2, 1, 2, 2), sample_schedule(10), 0.0,
                          callback=stop)  # fmt: skip
    assert len(calls) == 3


@pytest.mark.shipped_model
def test_pipeline_callback_decodes_to_the_video_and_changes_nothing():
    pipe = Pipeline.load()
    estimates: list[torch.Tensor] = []
    video = pipe.generate(["a red circle moving left"], seed=0, steps=6,
                          callback=lambda i, x0: estimates.append(x0))  # fmt: skip
    assert len(estimates) == 6
    assert np.array_equal(video, pipe.generate(["a red circle moving left"], seed=0, steps=6))
    assert np.array_equal(pipe.decode_latents(estimates[-1]), video)

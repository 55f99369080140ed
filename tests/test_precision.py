"""bf16 autocast is used only where the device computes bf16 natively."""

import warnings

import pytest
import torch

from nanosora import precision
from nanosora.config import DiTConfig, DiTTrainConfig, TrainConfig
from nanosora.models.dit import VideoDiT
from nanosora.train.dit import flow_loss


def test_the_measurement_warns_exactly_when_bf16_is_slow() -> None:
    precision.cpu_bf16_fast.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = precision.cpu_bf16_fast()
    assert isinstance(fast, bool)
    assert (not fast) == any(issubclass(w.category, RuntimeWarning) for w in caught)


@pytest.mark.parametrize("bf16_seconds", [0.5e-3, 2e-3])
def test_a_busy_machine_does_not_decide_the_measurement(monkeypatch, bf16_seconds) -> None:
    # Every other bf16 timing is preempted (1 s): the best of each dtype still decides.
    calls = iter(range(1000))

    def timed(a, b):
        i = next(calls)
        if a.dtype != torch.bfloat16:
            return 1e-3
        return bf16_seconds if i % 4 == 3 else 1.0

    monkeypatch.setattr(precision, "_seconds", timed)
    precision.cpu_bf16_fast.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert precision.cpu_bf16_fast() == (bf16_seconds < 1e-3)
    precision.cpu_bf16_fast.cache_clear()


@pytest.mark.parametrize("fast", [True, False])
def test_autocast_follows_the_hardware_and_the_request(monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_fast", lambda: fast)
    a = torch.randn(4, 4)
    with precision.bf16_autocast("cpu", True):
        wanted = a @ a
    with precision.bf16_autocast("cpu", False):
        unwanted = a @ a
    assert wanted.dtype == (torch.bfloat16 if fast else torch.float32)
    assert unwanted.dtype == torch.float32


def test_training_asks_for_bf16_but_computes_float32_where_it_is_emulated(monkeypatch) -> None:
    torch.manual_seed(0)
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2, text_dim=24))
    with torch.no_grad():  # past the zero-initialised output layers, so precision shows
        for p in dit.parameters():
            p.normal_(0.0, 0.2)
    x0, text = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 3, 24)
    mask = torch.ones(2, 3, dtype=torch.bool)

    def loss(bf16: bool) -> torch.Tensor:
        cfg = DiTTrainConfig(dit=dit.cfg, train=TrainConfig(out_dir="unused", bf16=bf16))
        return flow_loss(dit, x0, text, mask, cfg, torch.Generator().manual_seed(1))

    monkeypatch.setattr(precision, "cpu_bf16_fast", lambda: False)
    assert torch.equal(loss(True), loss(False))
    monkeypatch.setattr(precision, "cpu_bf16_fast", lambda: True)
    assert not torch.equal(loss(True), loss(False))

"""SIGReg against its definition: near its finite-sample floor for Gaussian samples, large for
collapsed or shifted ones, finite gradients, and equal to a direct numerical computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa_world.sigreg import SIGReg


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_samples_score_near_the_finite_sample_floor():
    x = torch.randn(1024, 32, generator=_gen(1))
    value = float(SIGReg(256)(x, generator=_gen(2)))
    # E[N * |phi_N - phi|^2] for Gaussian data is 1 - exp(-t^2); weighted and integrated: ~1.06
    assert 0.5 < value < 1.6, value


@pytest.mark.parametrize("batch", ["constant", "collapsed_to_a_line", "shifted", "too_wide"])
def test_non_gaussian_batches_score_far_above_the_floor(batch):
    g = _gen(3)
    x = {
        "constant": torch.ones(512, 16),
        "collapsed_to_a_line": torch.randn(512, 1, generator=g) * torch.ones(1, 16),
        "shifted": torch.randn(512, 16, generator=g) + 2.0,
        "too_wide": torch.randn(512, 16, generator=g) * 4.0,
    }[batch]
    assert float(SIGReg(128)(x, generator=_gen(4))) > 20.0


def test_leading_dimensions_are_averaged_over():
    x = torch.randn(3, 256, 8, generator=_gen(5))
    sig = SIGReg(64)
    together = float(sig(x, generator=_gen(6)))
    separately = np.mean([float(sig(x[i], generator=_gen(6))) for i in range(3)])
    assert together == pytest.approx(separately, rel=1e-5)


def test_gradients_are_finite_and_pull_a_collapsed_batch_apart():
    x = (0.01 * torch.randn(256, 8, generator=_gen(7))).requires_grad_(True)
    value = SIGReg(64)(x, generator=_gen(8))
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    spread = x.detach() - 0.1 * x.grad  # one small step down the gradient
    assert float(spread.std()) > float(x.detach().std())


def test_agrees_with_a_direct_computation():
    n, d, m, knots = 64, 5, 7, 17
    x = torch.randn(n, d, generator=_gen(9), dtype=torch.float64).float()
    value = float(SIGReg(m, knots=knots)(x, generator=_gen(10)))
    directions = torch.randn(d, m, generator=_gen(10)).double().numpy()
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    t = np.linspace(0.0, 3.0, knots)
    stats = []
    for j in range(m):
        p = x.double().numpy() @ directions[:, j]
        ecf = np.array([np.mean(np.exp(1j * tk * p)) for tk in t])
        integrand = np.abs(ecf - np.exp(-(t**2) / 2)) ** 2 * np.exp(-(t**2) / 2)
        area = sum((integrand[k] + integrand[k + 1]) / 2 * (t[k + 1] - t[k])
                   for k in range(knots - 1))
        stats.append(2 * n * area)
    assert value == pytest.approx(float(np.mean(stats)), rel=1e-4)


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="directions >= 1"):
        SIGReg(0)
    with pytest.raises(ValueError, match="N >= 2"):
        SIGReg(4)(torch.randn(1, 3))

import numpy as np
import pytest
import torch
from scipy import stats

import probtwin as pt
from probtwin.twins.likelihoods import LIKELIHOODS, Likelihood


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_every_likelihood_has_the_given_mean(name):
    torch.manual_seed(0)
    lik = Likelihood(name, 3)
    mean = torch.tensor([0.3, 2.0, 7.5])
    draws = lik.distribution(mean.expand(40000, 3)).sample()
    np.testing.assert_allclose(draws.mean(0).numpy(), mean.numpy(), rtol=0.04)


def test_log_probabilities_against_scipy():
    y = torch.tensor([0.0, 1.0, 3.0, 2.5])
    mean = torch.tensor([0.5, 2.0, 3.0, 1.0])
    zig = Likelihood("zig", 4)
    q, k = 0.5, float(zig.concentration[0].detach())
    expected = [np.log(1 - q)] + [
        np.log(q) + stats.gamma.logpdf(v, k, scale=m / (k * q)) for v, m in zip(y[1:].numpy(), mean[1:].numpy())
    ]
    np.testing.assert_allclose(zig.distribution(mean).log_prob(y).detach().numpy(), expected, rtol=1e-5)
    nb = Likelihood("negative_binomial", 4)
    r = float(nb.total_count[0].detach())
    counts = torch.tensor([0.0, 1.0, 3.0, 2.0])
    expected = stats.nbinom.logpmf(counts.numpy(), r, r / (r + mean.numpy()))
    np.testing.assert_allclose(nb.distribution(mean).log_prob(counts).detach().numpy(), expected, rtol=1e-5)
    # Poisson quasi-likelihood on trial averages: y log(lambda) - lambda - lgamma(y + 1)
    pois = Likelihood("poisson", 4).distribution(mean).log_prob(y)
    np.testing.assert_allclose(pois.numpy(), (y * mean.log() - mean - torch.lgamma(y + 1)).numpy(), rtol=1e-6)


def test_support_checks():
    with pytest.raises(pt.DataError, match="non-negative"):
        Likelihood("poisson", 2).check(-0.1, False)
    with pytest.raises(pt.DataError, match="zig"):
        Likelihood("gamma", 2).check(0.0, True)
    Likelihood("normal", 2).check(-5.0, True)
    with pytest.raises(pt.DataError, match="likelihood"):
        Likelihood("bernoulli", 2)


def test_parameters_are_constrained_and_module_local():
    import pyro

    pyro.clear_param_store()
    a, b = Likelihood("zig", 3), Likelihood("zig", 3)
    with torch.no_grad():
        a.q_unconstrained.fill_(10.0)
    assert torch.all(a.q < 1) and torch.all(a.q > 0.99) and torch.allclose(b.q, torch.tensor(0.5))
    a.distribution(torch.ones(3)).log_prob(torch.zeros(3))
    assert len(pyro.get_param_store()) == 0  # nothing global: two twins never share a parameter
    assert {n for n, _ in a.named_parameters()} == {"concentration_unconstrained", "q_unconstrained"}

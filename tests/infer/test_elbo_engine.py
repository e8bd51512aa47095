import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import probtwin as pt
from probtwin.infer import elbo_terms, resolve_device


def test_elbo_terms_of_a_conjugate_model():
    y = torch.tensor(1.5)
    m, s = torch.tensor(0.4), torch.tensor(0.7)

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(z, 1.0), obs=y)
        pyro.factor("prior_term", torch.tensor(-2.0))

    def guide():
        pyro.sample("z", dist.Normal(m, s))

    kl = math.log(1 / 0.7) + (0.7**2 + 0.4**2) / 2 - 0.5
    expected_ll = -0.5 * math.log(2 * math.pi) - 0.5 * ((1.5 - 0.4) ** 2 + 0.7**2)
    torch.manual_seed(0)
    draws = [elbo_terms(model, guide) for _ in range(4000)]
    assert draws[0].kl.item() == pytest.approx(kl, rel=1e-5)
    assert draws[0].factor.item() == pytest.approx(-2.0)
    assert sum(d.log_likelihood.item() for d in draws) / 4000 == pytest.approx(expected_ll, abs=0.03)
    assert draws[0].loss.item() == pytest.approx(-(draws[0].log_likelihood.item() - 2.0 - kl), rel=1e-6)


def test_subsampled_plates_scale_the_likelihood():
    data = torch.arange(10.0)

    def model(idx):
        with pyro.plate("trials", 10, subsample=idx):
            pyro.sample("y", dist.Normal(0.0, 1.0), obs=data[idx])

    full = elbo_terms(model, lambda idx: None, torch.arange(10)).log_likelihood
    halves = [elbo_terms(model, lambda idx: None, torch.arange(k, k + 5)).log_likelihood for k in (0, 5)]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(full.item())


def test_resolve_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(pt.DataError, match="device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(pt.DataError, match="CUDA is not available"):
            resolve_device("cuda")


def test_local_elbo_is_the_marginal_likelihood_when_the_local_guide_is_exact():
    from probtwin.infer import local_elbo

    y = torch.tensor([0.5, -1.0, 2.0])

    def model(y):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        with pyro.plate("trials", 3):
            z = pyro.sample("z", dist.Normal(theta, 1.0))
            with pyro.poutine.scale(scale=7.0):  # a tempered likelihood is scored untempered
                pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def guide(y):
        theta = pyro.sample("theta", dist.Normal(0.2, 0.1))
        with pyro.plate("trials", 3):
            pyro.sample("z", dist.Normal((theta + y) / 2, math.sqrt(0.5)))  # the exact posterior given theta

    total, count = local_elbo(model, guide, (y,), {"theta": torch.tensor(0.3)})
    exact = dist.Normal(0.3, math.sqrt(2.0)).log_prob(y).sum()  # p(y | theta), z integrated out
    assert count == 3 and total == pytest.approx(float(exact), rel=1e-5)

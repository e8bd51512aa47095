import numpy as np
import pytest
import torch

from probtwin.twins.flows import MonotoneFlow


def _perturbed(log_stage: bool) -> MonotoneFlow:
    flow = MonotoneFlow(4, log_stage=log_stage, count_bins=6, bound=3.0)
    flow.set_range(
        np.array([0.1, 0.5, 1.0, 0.2]),
        np.array([5.0, 3.0, 40.0, 1.0]),
        center=np.array([1.0, 2.0, 10.0, 0.5]),
        width=np.array([1.0, 0.5, 8.0, 0.2]),
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.spline.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return flow


def test_the_flow_starts_as_asinh_then_the_affine_map():
    flow = MonotoneFlow(2, log_stage=False)
    center, width = np.array([4.0, 0.0]), np.array([3.0, 1.0])
    flow.set_range(np.array([0.0, -2.0]), np.array([10.0, 2.0]), center=center, width=width)
    y = torch.tensor([[0.0, -2.0], [10.0, 2.0], [5.0, 0.0]])
    with torch.no_grad():
        z, log_det = flow(y)
    u = (y.numpy() - center) / width
    np.testing.assert_allclose(z, (np.arcsinh(u) - flow.offset.numpy()) / flow.scale.numpy(), atol=1e-3)
    np.testing.assert_allclose(z[:2].abs(), 0.8 * flow.spline.bound, rtol=1e-3)  # the range fills 80% of the box
    expected = -0.5 * np.log1p(u**2) - np.log(width) - np.log(flow.scale.numpy())
    np.testing.assert_allclose(log_det, expected, atol=1e-3)


@pytest.mark.parametrize("log_stage", [False, True])
def test_flow_is_monotone_invertible_with_the_exact_jacobian(log_stage):
    flow = _perturbed(log_stage)
    y = torch.linspace(0.05, 60, 400, dtype=torch.float32)[:, None].expand(-1, 4).contiguous()
    with torch.no_grad():
        z, log_det = flow(y)
        back = flow.inverse(z)
    assert torch.all(z[1:] > z[:-1])
    np.testing.assert_allclose(back, y, rtol=1e-4, atol=1e-4)
    y64 = y[::40].double().requires_grad_(True)
    flow64 = flow.double()
    z64, ld64 = flow64(y64)
    grad = torch.autograd.grad(z64.sum(), y64)[0]  # elementwise map: the diagonal of the Jacobian
    np.testing.assert_allclose(ld64.detach(), torch.log(grad), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("log_stage", [False, True])
def test_flow_is_the_composed_pyro_transform(log_stage):
    flow = _perturbed(log_stage)
    y = torch.rand(7, 4) * 20 + 0.1
    transform = flow.transform()
    with torch.no_grad():
        z, log_det = flow(y)
        z_pyro = transform(y)
        log_det_pyro = transform.log_abs_det_jacobian(y, z_pyro)
    np.testing.assert_allclose(z_pyro, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_det_pyro, log_det, rtol=1e-4, atol=1e-4)

import math

import numpy as np
import torch

from probtwin.nn.gaze import bumps, pooling_pyramid, read_gaussian, read_pooled


def test_the_pyramid_of_a_point_is_a_gaussian_of_each_size():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 20] = 1.0
    pyr = pooling_pyramid(x, levels=4, min_size=1.0)
    assert pyr.shape == (1, 1, 4, 41, 41)
    yy, xx = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    for level in range(4):
        r = 2.0**level
        gauss = torch.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / (2 * r**2)) / (2 * math.pi * r**2)
        torch.testing.assert_close(pyr[0, 0, level], gauss, atol=2e-3 / r**2, rtol=0)
        assert abs(pyr[0, 0, level].sum().item() - gauss.sum().item()) < 1e-4  # the mass inside the map


def test_zero_outside_the_map():
    x = torch.ones(1, 1, 32, 32)
    pyr = pooling_pyramid(x, levels=3, min_size=1.0)  # level 2: sd 4 pixels
    weights = np.exp(-(np.arange(32.0) ** 2) / 32) / np.exp(-(np.arange(-40.0, 41) ** 2) / 32).sum()
    corner = weights.sum() ** 2  # the part of the corner's Gaussian over the map
    assert abs(pyr[0, 0, 2, 16, 16].item() - 1.0) < 2e-3
    assert abs(pyr[0, 0, 2, 0, 0].item() - corner) < 2e-3 and corner < 0.35


def test_reading_at_pixels_and_levels_returns_the_pyramid_and_interpolates_between():
    torch.manual_seed(0)
    pyr = torch.randn(2, 3, 4, 10, 12)
    pos = torch.tensor([[[3.0, 5.0], [11.0, 0.0]], [[0.0, 9.0], [6.0, 2.0]]])  # (trials, P, 2) x, y
    level = torch.tensor([[0, 3], [1, 2]])
    out = read_pooled(pyr, pos, math.log2(0.5) + level.float(), 0.5)
    for t in range(2):
        for p in range(2):
            x, y = pos[t, p].long()
            torch.testing.assert_close(out[t, :, p], pyr[t, :, level[t, p], y, x])
    between = torch.tensor([[[3.5, 5.0]]]).expand(2, 1, 2)
    expected = pyr[:, :, :2, 5, 3:5].mean((-1, -2))  # halfway between pixels and between levels 0 and 1:
    half = read_pooled(pyr, between, torch.full((2, 1), math.log2(0.5) + 0.5), 0.5, blend="log")  # in log size
    torch.testing.assert_close(half[:, :, 0], expected)
    size = 0.5 * math.sqrt((1 + 4) / 2)  # in variance: 0.5^2 and 1^2 halfway
    half = read_pooled(pyr, between, torch.full((2, 1), math.log2(size)), 0.5)
    torch.testing.assert_close(half[:, :, 0], expected)
    beyond = read_pooled(pyr, pos, torch.full((2, 2), 40.0), 0.5)  # sizes past the last level read the last
    torch.testing.assert_close(beyond, read_pooled(pyr, pos, torch.full((2, 2), math.log2(0.5) + 3), 0.5))


def test_the_pooling_read_between_levels_has_the_size_as_its_sd():
    """A point's pyramid read at every pixel at a size s between levels: the pooling field's sd
    along each axis is s (``blend="variance"``, the default), as at the levels and as
    :func:`read_gaussian`'s; blending linearly in log size makes it up to 12% wider."""
    point = torch.zeros(1, 1, 61, 61)
    point[0, 0, 30, 30] = 1.0
    pyr = pooling_pyramid(point, levels=4, min_size=1.0)
    yy, xx = torch.meshgrid(torch.arange(61.0), torch.arange(61.0), indexing="ij")
    everywhere = torch.stack([xx.flatten(), yy.flatten()], -1)[None]  # (1, 61 * 61, 2)

    def sd(field: torch.Tensor) -> float:
        return float(((xx.flatten() - 30) ** 2 * field).sum() / field.sum()) ** 0.5

    for s in (1.0, 1.2, 1.5, 1.9, 2.6, 3.3, 4.0, 5.7):
        log2_size = torch.full((1, 61 * 61), math.log2(s))
        assert abs(sd(read_pooled(pyr, everywhere, log2_size, 1.0)[0, 0]) / s - 1) < 0.002
        assert abs(sd(read_gaussian(point, everywhere, log2_size, 1.0, 4)[0, 0]) / s - 1) < 0.002
    log2_size = torch.full((1, 61 * 61), 0.5)  # halfway between 1 and 2 in log size
    wide = sd(read_pooled(pyr, everywhere, log2_size, 1.0, blend="log")[0, 0])
    assert abs(wide - math.sqrt((1 + 4) / 2)) < 0.002  # not sqrt(2): 1.118 times wider


def test_reading_directly_equals_reading_the_pyramid_at_its_levels():
    torch.manual_seed(1)
    maps = torch.randn(3, 2, 11, 13)
    pyr = pooling_pyramid(maps, levels=4, min_size=0.5)
    pos = torch.tensor([[[3.0, 5.0], [12.0, 0.0]], [[0.0, 10.0], [6.0, 2.0]], [[7.0, 7.0], [1.0, 9.0]]])
    level = torch.tensor([[0, 3], [1, 2], [2, 0]]).float()
    direct = read_gaussian(maps, pos, math.log2(0.5) + level, 0.5, 4)
    torch.testing.assert_close(direct, read_pooled(pyr, pos, math.log2(0.5) + level, 0.5), atol=1e-5, rtol=0)
    # sizes beyond the pyramid are clamped as the pyramid clamps them
    beyond = read_gaussian(maps, pos, torch.full((3, 2), 40.0), 0.5, 4)
    torch.testing.assert_close(beyond, read_gaussian(maps, pos, torch.full((3, 2), math.log2(0.5) + 3), 0.5, 4))
    # a place between pixels: the Gaussian centred there (not an interpolation of the pixels' reads)
    point = torch.zeros(1, 1, 11, 13)
    point[0, 0, 5, 6] = 1.0
    half = read_gaussian(point, torch.tensor([[[6.5, 5.0]]]), torch.tensor([[0.0]]), 0.5, 4)
    norm = np.exp(-(np.arange(-40.0, 41) ** 2) / 2).sum()
    assert abs(half.item() - np.exp(-0.25 / 2) / norm**2) < 1e-6


def test_bumps_vanish_without_a_saccade():
    b = bumps(torch.tensor([0.0, 2.0, 1e3]), torch.tensor([0.0, 2.0]), 1.0)
    np.testing.assert_allclose(b.numpy(), [[1, math.exp(-2)], [math.exp(-2), 1], [0, 0]], atol=1e-7)


def test_sum_over_lags_filters_each_bumps_drive_by_its_bump_and_sums():
    from probtwin.nn.gaze import causal_filter, lag_basis, sum_over_lags

    torch.manual_seed(0)
    drive = torch.randn(2, 3, 9, 4, 3)  # (draws, trials, frames, neurons, bumps)
    lags = lag_basis(5, 3)
    series = drive.permute(0, 1, 3, 4, 2).reshape(-1, 3, 9)  # (draws trials neurons, bumps, frames)
    expected = causal_filter(series, lags).sum(1).reshape(2, 3, 4, 9).transpose(-1, -2)
    torch.testing.assert_close(sum_over_lags(drive, lags), expected)
    short = sum_over_lags(drive[:, :, :3], lags)  # fewer frames than lags: only the past there is
    torch.testing.assert_close(short, expected[:, :, :3])

import pytest
import torch

from probtwin.nn import (
    ConvCore,
    GaussianReadout,
    Modulator,
    PositionPredictor,
    Shifter,
    contrast_energy,
    energy_rf_centres,
    energy_rf_start,
    laplace_penalty,
    mlp,
    read_features,
    readout_response,
    shift_frames,
)


def test_core_keeps_the_spatial_size_and_centres_features():
    torch.manual_seed(0)
    core = ConvCore(1, hidden_channels=4, layers=3).eval()
    x = torch.zeros(1, 1, 21, 21)
    base = core(x)
    x[0, 0, 10, 10] = 1.0
    diff = (core(x) - base).abs().sum(1)[0]
    assert core(x).shape == (1, 4, 21, 21)
    ys, xs = torch.nonzero(diff > 1e-6, as_tuple=True)
    assert ys.float().mean() == pytest.approx(10, abs=1e-4) or (ys.min() + ys.max()) / 2 == 10
    assert (xs.min() + xs.max()) / 2 == 10  # the response spreads symmetrically around the input
    with pytest.raises(ValueError, match="odd"):
        ConvCore(1, input_kernel=8)


def test_core_passes_its_input_before_its_features():
    torch.manual_seed(0)
    plain = ConvCore(2, hidden_channels=4, layers=2).eval()
    both = ConvCore(2, hidden_channels=4, layers=2, pass_input=True).eval()
    both.load_state_dict(plain.state_dict())  # the same layers: pass_input adds no parameter
    x = torch.randn(3, 2, 11, 13)
    out = both(x)
    assert both.out_channels == out.shape[1] == 6 and plain.out_channels == 4
    torch.testing.assert_close(out[:, :2], x)  # the stimulus itself, then the features
    torch.testing.assert_close(out[:, 2:], plain(x))


def test_laplace_penalty_of_a_delta_kernel():
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0
    assert laplace_penalty(w).item() == pytest.approx(4 * 0.25 + 4 * 1 + 36)
    smooth = torch.ones(1, 1, 9, 9)
    assert laplace_penalty(smooth) < laplace_penalty(torch.randn(1, 1, 9, 9))


def test_read_features_is_bilinear_in_pixel_coordinates():
    height, width = 8, 12
    cols = torch.arange(width, dtype=torch.float32).expand(height, width)
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    features = torch.stack([cols, rows])[None].repeat(2, 1, 1, 1)  # (2, 2, H, W)
    grid = torch.tensor([[-0.5, 0.25], [0.3, -0.2], [0.0, 0.0]])
    out = read_features(features, grid)  # (batch, channels, neurons)
    expected_x = ((grid[:, 0] + 1) * width - 1) / 2
    expected_y = ((grid[:, 1] + 1) * height - 1) / 2
    torch.testing.assert_close(out[0, 0], expected_x)
    torch.testing.assert_close(out[0, 1], expected_y)
    shifted = read_features(features, grid, shift=torch.tensor([[0.1, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(shifted[0, 0], expected_x + 0.1 * width / 2)
    torch.testing.assert_close(shifted[1, 0], expected_x)


def test_readout_with_draws_equals_one_draw_at_a_time():
    torch.manual_seed(1)
    features = torch.randn(3, 5, 7, 9)
    pos, w, b = torch.rand(4, 6, 2) - 0.5, torch.randn(4, 6, 5), torch.randn(4, 6)
    stacked = readout_response(features, pos, w, b)
    assert stacked.shape == (4, 3, 6)
    for d in range(4):
        torch.testing.assert_close(stacked[d], readout_response(features, pos[d], w[d], b[d]))
    module = GaussianReadout(6, 5)
    assert module(features).shape == (3, 6)
    torch.testing.assert_close(module(features, positions=pos[0], weights=w[0], bias=b[0]), stacked[0])


def test_shifter_modulator_and_position_predictor():
    shifter = Shifter(max_shift=0.2)
    assert torch.all(shifter(torch.randn(5, 2)) == 0)  # starts with no shift
    with torch.no_grad():
        for p in shifter.parameters():
            p.normal_(0, 10)
    assert shifter(torch.randn(100, 2)).abs().max() <= 0.2
    mod = Modulator(3, 4)
    torch.testing.assert_close(mod(torch.randn(5, 3)), torch.ones(5, 4))  # starts at gain 1
    assert PositionPredictor(3)(torch.randn(7, 3)).abs().max() < 1


def test_shift_frames_shows_each_frame_where_the_simulators_eye_sees_it():
    """Whole-pixel shifts: pixel q of the output holds the input at q + shift, as
    ``simulate.images.shift_images`` (circular there, zero outside here: compared inside)."""
    import numpy as np

    from probtwin.simulate.images import shift_images

    rng = np.random.default_rng(0)
    frames = rng.standard_normal((3, 12, 16)).astype(np.float32)
    pixels = np.array([[2.0, -1.0], [0.0, 3.0], [-2.0, 0.0]])
    expected = shift_images(frames, pixels)
    grid_units = torch.tensor(pixels * [2 / 16, 2 / 12], dtype=torch.float32)  # a pixel spans 2 / size
    out = shift_frames(torch.tensor(frames)[:, None].repeat(1, 2, 1, 1), grid_units)
    assert out.shape == (3, 2, 12, 16)
    inside = (slice(3, -3), slice(3, -3))
    torch.testing.assert_close(out[:, 0][(slice(None), *inside)], torch.tensor(expected)[(slice(None), *inside)])
    torch.testing.assert_close(out[:, 1], out[:, 0])  # every channel alike
    assert torch.all(out[0, :, :, -2:] == 0)  # nothing outside the frame: zeros, not wrapped around
    unmoved = shift_frames(torch.tensor(frames)[:, None], torch.zeros(3, 2))[:, 0]
    torch.testing.assert_close(unmoved, torch.tensor(frames))


def test_contrast_energy_is_local():
    img = torch.zeros(1, 1, 20, 30)
    img[0, 0, 5:8, 20:23] = 1.0  # a bright patch
    e = contrast_energy(img, sigma=1.5)[0]
    y, x = divmod(int(e.argmax()), 30)
    assert abs(y - 6) <= 1 and abs(x - 21) <= 1
    assert contrast_energy(torch.full((1, 3, 10, 10), 4.0)).abs().max() < 1e-6  # no contrast, no energy


def test_energy_rf_centres_find_where_responses_follow_contrast():
    torch.manual_seed(0)
    images = torch.randn(600, 1, 24, 40)
    e = contrast_energy(images)
    where = torch.tensor([[5, 4], [30, 18], [20, 12]])  # (x, y)
    responses = torch.stack([e[:, y, x] for x, y in where], 1) + 0.01 * torch.randn(600, 3)
    chunks = [(images[i : i + 128], responses[i : i + 128]) for i in range(0, 600, 128)]
    found = energy_rf_centres(chunks)
    assert (found - where.float()).abs().max() <= 1


def test_energy_rf_centres_take_the_scale_of_the_fields():
    torch.manual_seed(0)
    images = torch.randn(400, 1, 24, 40)
    e = contrast_energy(images, 4.0)  # fields of scale 4
    where = torch.tensor([[6, 6], [30, 18], [20, 12], [12, 16]])
    responses = torch.stack([e[:, y, x] for x, y in where], 1)
    responses = responses + responses.std(0) * torch.randn(400, 4)
    chunks = [(images[i : i + 128], responses[i : i + 128]) for i in range(0, 400, 128)]
    small, right = energy_rf_centres(chunks, sigma=2.0), energy_rf_centres(chunks, sigma=4.0)
    assert (right == where).all() and not (small == where).all()
    assert (energy_rf_centres(chunks, sigma=(2.0, 4.0)) == right).all()  # the better scale is chosen
    centres, scale, strength = energy_rf_start(chunks, sigma=(2.0, 4.0))
    assert scale == 4.0 and (centres == right).all()
    assert strength.shape == (4,) and (strength > 10).all()  # fields found: far above noise's maximum
    noise = [(x, torch.randn(len(x), 4)) for x, _ in chunks]
    assert (energy_rf_start(noise, sigma=4.0)[2] < 5).all()  # no field: a noise maximum over 960 places
    fine = contrast_energy(images, 1.0)  # fields of scale 1: the start's size is the small scale
    responses = torch.stack([fine[:, y, x] for x, y in where], 1)
    responses = responses + responses.std(0) * torch.randn(400, 4)
    chunks = [(images[i : i + 128], responses[i : i + 128]) for i in range(0, 400, 128)]
    assert energy_rf_start(chunks, sigma=(0.5, 1.0, 4.0))[1] == 1.0


def test_mlp_shape():
    net = mlp(3, 5, 3, 2)
    assert net(torch.zeros(4, 3)).shape == (4, 2) and len(net) == 5


def test_state_weights_change_the_readout_by_v_transpose_z():
    from probtwin.nn.readout import read_features, readout_response

    torch.manual_seed(0)
    features = torch.randn(4, 3, 6, 7)
    positions = torch.rand(2, 5, 2) * 2 - 1
    weights, bias = torch.randn(2, 5, 3), torch.randn(2, 5)
    state, state_weights = torch.randn(4, 2), torch.randn(2, 5, 2, 3)
    out = readout_response(features, positions, weights, bias, None, state, state_weights)
    feats = read_features(features, positions)  # (batch, C, draws, N)
    for d in range(2):
        for b in range(4):
            w = weights[d] + torch.einsum("j,njc->nc", state[b], state_weights[d])
            assert torch.allclose(out[d, b], (feats[b, :, d].T * w).sum(-1) + bias[d], atol=1e-5)
    single = readout_response(features, positions[0], weights[0], bias[0], None, state, state_weights[0])
    assert torch.allclose(single, out[0], atol=1e-5)


def test_energy_rf_start_finds_linear_fields_of_bright_and_dark_probes_with_linear():
    """Probes of either sign on a grid: a unit excited by bright probes at a place and inhibited
    by dark ones there follows the probe itself, not its energy (the same for both signs)."""
    gen = torch.Generator().manual_seed(0)
    maps = torch.zeros(3000, 1, 9, 9)
    place = torch.randint(0, 81, (3000,), generator=gen)
    sign = torch.randint(0, 2, (3000,), generator=gen).float() * 2 - 1
    maps[torch.arange(3000), 0, place // 9, place % 9] = sign
    where = torch.tensor([[2, 6], [7, 1]])  # (x, y)
    responses = torch.stack([maps[:, 0, y, x] for x, y in where], 1) + 0.3 * torch.randn(3000, 2, generator=gen)
    chunks = [(maps[i : i + 500], responses[i : i + 500]) for i in range(0, 3000, 500)]
    centres, scale, _ = energy_rf_start(chunks, sigma=1.0, linear=True)
    assert (centres == where).all() and scale == 1.0
    assert not (energy_rf_start(chunks, sigma=1.0)[0] == where).all()  # energy alone does not see them

"""Stimulus families: pixel values, conventions shared with the simulator, parameter tables."""

import numpy as np
import pytest

import probtwin as pt
from probtwin import experiments as ex
from probtwin.simulate.population import gabor_bank


def test_gratings_follow_the_simulators_orientation_convention():
    s = ex.gratings([0.0, np.pi / 2], [0.125], phases=[0.0], size=(16, 24))
    assert s.images.shape == (2, 1, 16, 24) and len(s) == 2
    horizontal_wave, vertical_wave = s.images[:, 0]
    assert np.allclose(horizontal_wave, horizontal_wave[:1])  # theta = 0 varies along x only
    assert np.allclose(vertical_wave, vertical_wave[:, :1])  # theta = pi / 2 along y only
    x = np.arange(24) - 11.5
    assert np.allclose(horizontal_wave[0], np.sqrt(2) * np.cos(2 * np.pi * 0.125 * x), atol=1e-5)
    assert np.isclose(np.sqrt((horizontal_wave**2).mean()), 1.0, atol=1e-3)  # unit RMS contrast


def test_grating_table_is_the_full_grid():
    s = ex.gratings(np.linspace(0, np.pi, 6, endpoint=False), [0.05, 0.1], phases=4, size=(8, 8), channels=3)
    assert s.images.shape == (48, 3, 8, 8)
    assert list(s.parameters.columns) == ["orientation", "spatial_frequency", "phase"]
    assert s.is_grid() and s.parameters["phase"].nunique() == 4
    assert np.allclose(s.images[:, 0], s.images[:, 2])


def test_gabors_are_the_simulators_gabor_filters():
    positions = np.array([[10.0, 7.0], [4.0, 9.0]])
    s = ex.gabors(positions, [0.3, 2.0], [0.1], [3.0], phases=[0.7], size=(16, 20))
    table = s.parameters
    even, _ = gabor_bank(
        table[["x", "y"]].to_numpy(),
        table["orientation"].to_numpy(),
        table["spatial_frequency"].to_numpy(),
        table["sigma"].to_numpy(),
        table["phase"].to_numpy(),
        (16, 20),
    )
    for image, filt in zip(s.images[:, 0], even):
        assert np.corrcoef(image.ravel(), filt)[0, 1] > 0.99
    centre = s.images[0, 0, 7, 10]
    assert np.isclose(centre, np.sqrt(2) * np.cos(0.7), atol=1e-5)


def test_sparse_noise_has_one_square_per_image():
    s = ex.sparse_noise(block=2, size=(6, 8), contrast=2.0)
    assert s.is_grid() and len(s) == 3 * 4 * 2
    for image, (_, row) in zip(s.images[:, 0], s.parameters.iterrows()):
        changed = np.argwhere(image != 0)
        assert len(changed) == 4
        assert np.allclose(changed.mean(0), [row["y"], row["x"]])
        assert np.all(image[image != 0] == 2.0 * row["polarity"])


def test_a_twin_supplies_size_channels_and_pixel_statistics():
    sim = pt.simulate.v1(n_neurons=4, n_images=40, image_size=(12, 16), seed=0)
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, posterior="readout")
    s = ex.gratings([0.0], twin=twin, phases=1)
    assert s.images.shape == (1, 1, 12, 16)
    mean, std = float(twin.stim_mean_0), float(twin.stim_std_0)
    plain = ex.gratings([0.0], size=(12, 16), phases=1)
    assert np.allclose((s.images - mean) / std, plain.images, atol=1e-5)
    with pytest.raises(pt.DataError, match="size"):
        ex.gratings([0.0], size=(8, 8), twin=twin)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: ex.gratings([0.0]), "size"),
        (lambda: ex.gratings([], size=(4, 4)), "orientations"),
        (lambda: ex.gratings([0.0], [0.0], size=(4, 4)), "spatial_frequencies"),
        (lambda: ex.gratings([0.0], phases=0, size=(4, 4)), "phases"),
        (lambda: ex.gratings([0.0], size=(4, 4), contrast=-1), "contrast"),
        (lambda: ex.gabors([1.0, 2.0, 3.0], [0.0], size=(4, 4)), "positions"),
        (lambda: ex.sparse_noise(block=5, size=(4, 4)), "block"),
        (lambda: ex.StimulusSet(np.zeros((2, 4, 4)), None), "images"),
        (lambda: ex.StimulusSet(np.zeros((2, 1, 4, 4)), ex.gratings([0.0], size=(4, 4)).parameters), "parameters"),
    ],
)
def test_bad_stimulus_arguments_are_data_errors(call, field):
    with pytest.raises(pt.DataError, match=field):
        call()

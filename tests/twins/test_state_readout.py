"""ImageTwin(state_readout=True) and predictions in a chosen behavioural state."""

import numpy as np
import pytest

import probtwin as pt


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=6, n_images=120, image_size=(16, 20), seed=2, pupil_shift_fraction=0.5)


@pytest.fixture(scope="module")
def twin(sim):
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, behavior_in_core=False, state_readout=True)
    twin.fit(max_epochs=2, progress=False)
    return twin


def test_one_behaviour_row_is_broadcast_over_the_stimuli(sim, twin):
    images = np.asarray(sim.recording.stimuli[:5])
    row = np.asarray(sim.recording.behavior[:1])
    one = twin.predict(images, 4, seed=1, behavior=row).samples
    many = twin.predict(images, 4, seed=1, behavior=np.repeat(row, 5, axis=0)).samples
    assert np.allclose(one, many)
    average = twin.predict(images, 4, seed=1).samples
    mean_state = twin.behavior_mean_0.numpy()[None]
    assert np.allclose(average, twin.predict(images, 4, seed=1, behavior=mean_state).samples, atol=1e-5)
    assert not np.allclose(one, average)  # the state matters (gain and state weights)


def test_state_weights_change_the_tuning_not_only_the_gain(sim, twin):
    """With V_i != 0 the responses in two states are not proportional across stimuli."""
    images = np.asarray(sim.recording.stimuli[:20])
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, behavior_in_core=False, state_readout=True)
    twin.readouts[0].state_loc.data.normal_(0, 0.5)
    low, high = (
        twin.predict(images, 1, behavior=np.percentile(sim.recording.behavior, q, axis=0)[None]) for q in (5, 95)
    )
    ratio = high.mean / low.mean
    assert np.std(ratio, axis=0).max() > 1e-2


def test_save_and_load_keep_the_state_readout(sim, twin, tmp_path):
    images = np.asarray(sim.recording.stimuli[:3])
    row = np.asarray(sim.recording.behavior[3:4])
    loaded = pt.load(twin.save(tmp_path / "t.pt"))
    assert loaded.config["state_readout"]
    assert np.allclose(loaded.predict(images, 3, behavior=row).samples, twin.predict(images, 3, behavior=row).samples)


def test_bad_states_are_data_errors(sim, twin):
    images = np.asarray(sim.recording.stimuli[:4])
    with pytest.raises(pt.DataError, match="behavior"):
        twin.predict(images, behavior=np.zeros((2, 3)))
    with pytest.raises(pt.DataError, match="behavior"):
        twin.predict(images, behavior=np.zeros((1, 2)))
    with pytest.raises(pt.DataError, match="behavior"):
        twin.predict(images, behavior=np.full((1, 3), np.nan))
    with pytest.raises(pt.DataError, match="behavior"):
        twin.predict(sim.recording, behavior=np.zeros((1, 3)))
    still = pt.simulate.v1(n_neurons=3, n_images=20, image_size=(12, 12), seed=0).recording
    plain = pt.Recording(np.asarray(still.stimuli), np.asarray(still.responses), name="no behaviour")
    with pytest.raises(pt.DataError, match="state_readout"):
        pt.ImageTwin(plain, state_readout=True, hidden_channels=4, layers=1)

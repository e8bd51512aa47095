"""ImageTwin(state_readout=True) and predictions in a chosen behavioural state."""

import numpy as np
import pytest

import probtwin as pt


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=6, n_images=120, image_size=(16, 20), seed=2, pupil_shift_fraction=0.5)


@pytest.fixture(scope="module")
def twin(sim):
    twin = pt.ImageTwin(
        sim.recording, hidden_channels=4, layers=1, behavior_in_core=False, state_readout=True, posterior="readout"
    )
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
    twin = pt.ImageTwin(
        sim.recording, hidden_channels=4, layers=1, behavior_in_core=False, state_readout=True, posterior="readout"
    )
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


def test_a_state_readout_keeps_behaviour_out_of_the_core_by_default(sim):
    """With state_readout, state reaches the responses through the Bayesian readout only (every
    state effect has a posterior); without it, behaviour feeds the core. compare_states warns on
    a core that takes behaviour: its state effects are point estimates."""
    small = dict(hidden_channels=4, layers=1, posterior="readout")
    assert pt.ImageTwin(sim.recording, state_readout=True, **small).config["behavior_in_core"] is False
    into_core = pt.ImageTwin(sim.recording, **small)
    assert into_core.config["behavior_in_core"] is True
    assert pt.ImageTwin(sim.recording, state_readout=True, behavior_in_core=True, **small).config["behavior_in_core"]
    stimuli = pt.experiments.gratings(np.linspace(0, np.pi, 4, endpoint=False), [0.1], phases=2, twin=into_core)
    behavior = np.asarray(sim.recording.behavior)
    a, b = np.percentile(behavior, 10, axis=0)[None], np.percentile(behavior, 90, axis=0)[None]
    with pytest.warns(UserWarning, match="behavior_in_core=True"):
        pt.experiments.compare_states(into_core, stimuli, a, b, "log_gain", num_samples=4)

import numpy as np
import pytest

import probtwin as pt
from probtwin.infer import progress as bars


def test_bars_follow_the_switch_and_the_environment(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.delenv("PROBTWIN_PROGRESS", raising=False)
    assert bars.progress_enabled()
    shown = bars.progress(items, "step")
    assert list(shown) == items and shown is not items and shown.delay == bars.DELAY
    with bars.show_progress(False):
        assert bars.progress(items, "step") is items
        with bars.show_progress(True):
            assert bars.progress_enabled()
        assert not bars.progress_enabled()
    monkeypatch.setenv("PROBTWIN_PROGRESS", "0")
    assert bars.progress(items, "step") is items
    with bars.show_progress(True):
        assert bars.progress_enabled()


@pytest.mark.parametrize("setting", ["0", "1"])
def test_a_fit_prints_its_bar_only_when_bars_are_on(monkeypatch, capsys, setting):
    monkeypatch.setenv("PROBTWIN_PROGRESS", setting)
    sim = pt.simulate.v1(n_neurons=4, n_images=40, image_size=(12, 16), seed=0)
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, posterior="readout")
    twin.fit(max_epochs=1, progress=True, seed=0)
    err = capsys.readouterr().err
    assert ("fit" in err) == (setting == "1")
    pred = twin.predict(sim.recording.split("test"), num_samples=3)
    assert np.isfinite(pred.mean).all()

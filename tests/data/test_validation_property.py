"""Property-based: every malformed recording raises a DataError naming the right field."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probtwin as pt

TRIED: list[str] = []
N_CASES = 300


@pytest.fixture(scope="module", autouse=True)
def count_cases():
    yield
    print(f"\nmalformed recordings tried: {len(TRIED)} ({len(set(TRIED))} kinds of fault)")
    assert len(TRIED) >= 200, f"only {len(TRIED)} malformed recordings were tried"


def valid(draw):
    n = draw(st.integers(2, 9))
    neurons = draw(st.integers(2, 5))
    frames = draw(st.sampled_from([None, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    lead = (n,) if frames is None else (n, frames)
    if frames is None:
        stimuli = rng.normal(size=(n, 1, 3, 4))
    else:
        stimuli = draw(st.sampled_from([rng.normal(size=(n, frames, 2)), rng.normal(size=(n, 1, frames, 3, 3))]))
    args = dict(
        stimuli=stimuli,
        responses=rng.poisson(1.0, size=(*lead, neurons)).astype(float),
        behavior=rng.normal(size=(*lead, 2)),
        gaze=rng.normal(size=(*lead, 2)),
        neuron_coords=rng.normal(size=(neurons, 3)),
        neuron_area=np.array(["V1"] * neurons),
        neuron_ids=np.arange(neurons),
        tiers=np.array(["train"] * (n - 1) + ["test"]),
        stimulus_ids=np.arange(n),
    )
    return args, rng, n, neurons, frames


@st.composite
def malformed(draw):
    args, rng, n, neurons, frames = valid(draw)
    kind = draw(
        st.sampled_from(
            [
                "trials",
                "nonfinite",
                "ndim",
                "empty",
                "tier_label",
                "no_train",
                "duplicate_ids",
                "dtype",
                "neuron_length",
                "gaze_coordinates",
                "frames",
            ]
        )
    )
    if kind == "frames" and frames is None:
        kind = "trials"
    if kind == "trials":
        field = draw(st.sampled_from(["stimuli", "behavior", "gaze", "tiers", "stimulus_ids"]))
        m = draw(st.sampled_from([n - 1, n + 1, n + 3]))
        x = np.asarray(args[field])
        args[field] = np.concatenate([x] * 2)[:m]
    elif kind == "nonfinite":
        field = draw(st.sampled_from(["stimuli", "responses", "behavior", "gaze", "neuron_coords"]))
        x = args[field].astype(float).copy()
        flat = x.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        args[field] = x
    elif kind == "ndim":
        field = draw(st.sampled_from(["responses", "stimuli", "behavior", "gaze", "neuron_coords"]))
        x = args[field]
        allowed = {
            "responses": (2, 3),
            "stimuli": (3, 4, 5),
            "neuron_coords": (2,),
            "behavior": (2,) if frames is None else (2, 3),
            "gaze": (2,) if frames is None else (2, 3),
        }
        wrong = [d for d in (1, 2, 3, 4, 5, 6) if d not in allowed[field]]
        d = draw(st.sampled_from(wrong))
        shape = list(x.shape[:d]) + [1] * max(0, d - x.ndim)
        if d == 1:
            shape = [x.shape[0]]
        args[field] = np.ones(shape)
    elif kind == "empty":
        field = "responses"
        if draw(st.booleans()):
            args = {k: (v[:0] if k in ("stimuli", "responses", "behavior", "gaze") else v) for k, v in args.items()}
            args.update(tiers=None, stimulus_ids=None)
        else:
            args["responses"] = args["responses"][..., :0]
    elif kind == "tier_label":
        field = "tiers"
        tiers = args["tiers"].astype("<U20")
        tiers[draw(st.integers(0, n - 1))] = draw(st.sampled_from(["Train", "val", "final_test", "", "oracle"]))
        args["tiers"] = tiers
    elif kind == "no_train":
        field = "tiers"
        args["tiers"] = np.array(draw(st.lists(st.sampled_from(["validation", "test"]), min_size=n, max_size=n)))
    elif kind == "duplicate_ids":
        field = "neuron_ids"
        ids = np.arange(neurons)
        ids[draw(st.integers(1, neurons - 1))] = 0
        args["neuron_ids"] = ids
    elif kind == "dtype":
        field = draw(st.sampled_from(["responses", "stimuli", "behavior", "gaze", "neuron_coords"]))
        x = args[field]
        args[field] = draw(st.sampled_from([x.astype(str), x.astype(complex), x.astype(object).astype(str)]))
    elif kind == "neuron_length":
        field = draw(st.sampled_from(["neuron_coords", "neuron_area", "neuron_ids"]))
        m = draw(st.sampled_from([neurons - 1, neurons + 2]))
        if field == "neuron_coords":
            args[field] = draw(st.sampled_from([np.ones((m, 3)), np.ones((neurons, 1)), np.ones((neurons, 4))]))
        else:
            args[field] = np.arange(m).astype(str if field == "neuron_area" else int)
    elif kind == "gaze_coordinates":
        field = "gaze"
        args["gaze"] = np.ones((*args["gaze"].shape[:-1], draw(st.sampled_from([1, 3, 4]))))
    else:  # frames
        field = draw(st.sampled_from(["behavior", "gaze", "stimuli"]))
        x = args[field]
        axis = 2 if (field == "stimuli" and x.ndim == 5) else 1
        args[field] = np.concatenate([x, x], axis=axis)
    return kind, field, args


@settings(max_examples=N_CASES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_every_malformed_recording_raises_a_data_error_naming_the_field(case):
    kind, field, args = case
    stimuli, responses = args.pop("stimuli"), args.pop("responses")
    with pytest.raises(pt.DataError) as info:
        pt.Recording(stimuli, responses, **args)
    assert info.value.field == field, f"{kind}: expected field {field}, got {info.value}"
    TRIED.append(kind)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_valid_recordings_construct_and_split(data):
    args, _, n, neurons, frames = valid(data.draw)
    stimuli, responses = args.pop("stimuli"), args.pop("responses")
    rec = pt.Recording(stimuli, responses, **args)
    assert rec.n_trials == n and rec.n_neurons == neurons and rec.n_frames == frames
    train = rec.split("train")
    np.testing.assert_array_equal(np.asarray(train.responses), responses[train.trial_index])

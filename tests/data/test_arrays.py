import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probtwin as pt
from probtwin.data.arrays import TrialArray, TrialStack, as_trial_index


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_trial_array_indexes_like_numpy(data):
    n = data.draw(st.integers(1, 12))
    base = np.arange(n * 3.0).reshape(n, 3)
    view_idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=10)))
    view = TrialArray(base, view_idx)
    expected = base[view_idx]
    assert view.shape == expected.shape and len(view) == len(expected)
    np.testing.assert_array_equal(np.asarray(view), expected)
    k = len(view_idx)
    inner = np.array(data.draw(st.lists(st.integers(-k, k - 1), min_size=0, max_size=6)), dtype=int)
    np.testing.assert_array_equal(view[inner], expected[inner])
    i = data.draw(st.integers(-k, k - 1))
    np.testing.assert_array_equal(view[i], expected[i])
    a, b = sorted(data.draw(st.tuples(st.integers(0, k), st.integers(0, k))))
    np.testing.assert_array_equal(view[a:b], expected[a:b])
    np.testing.assert_array_equal(view[:, 1], expected[:, 1])
    np.testing.assert_array_equal(TrialArray(view, inner).__array__(), expected[inner])  # composition


def test_trial_array_arithmetic_and_reductions():
    a = TrialArray(np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(a * 2, np.arange(6.0).reshape(3, 2) * 2)
    assert np.mean(a) == 2.5
    np.testing.assert_array_equal(np.log1p(a), np.log1p(np.arange(6.0).reshape(3, 2)))
    assert [c.shape for c in a.chunks(2)] == [(2, 2), (1, 2)]


def test_as_trial_index_errors():
    np.testing.assert_array_equal(as_trial_index(np.array([True, False, True]), 3), [0, 2])
    with pytest.raises(pt.DataError, match="boolean mask of shape"):
        as_trial_index(np.array([True]), 3)
    with pytest.raises(pt.DataError, match="positions in"):
        as_trial_index([5], 3)
    with pytest.raises(pt.DataError, match="integer positions"):
        as_trial_index([0.5], 3)


def _write(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        np.save(folder / f"{i}.npy", a)
        paths.append(str(folder / f"{i}.npy"))
    return paths


def test_trial_stack_reads_lazily_from_folder_and_zip(tmp_path, rng):
    arrays = [rng.normal(size=(2, 3)) for _ in range(5)]
    paths = _write(tmp_path / "f", arrays)
    stack = TrialStack(paths, "responses", transform=lambda a: a.T)
    assert stack.shape == (5, 3, 2)
    np.testing.assert_array_equal(stack[[4, 1]], np.stack([arrays[4].T, arrays[1].T]))
    np.testing.assert_array_equal(np.asarray(stack), np.stack([a.T for a in arrays]))
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        for i, p in enumerate(paths):
            zf.write(p, f"x/{i}.npy")
    zstack = TrialStack([f"x/{i}.npy" for i in range(5)], "responses", archive=tmp_path / "z.zip")
    np.testing.assert_array_equal(zstack[2], arrays[2])
    import pickle

    clone = pickle.loads(pickle.dumps(zstack))  # a DataLoader worker gets its own zip handle
    np.testing.assert_array_equal(clone[3], arrays[3])


def test_trial_stack_refuses_bad_trials_when_read(tmp_path, rng):
    arrays = [rng.normal(size=3), rng.normal(size=4), np.array([1.0, np.nan, 0.0])]
    stack = TrialStack(_write(tmp_path / "g", arrays), "responses")
    np.testing.assert_array_equal(stack[0], arrays[0])
    with pytest.raises(pt.DataError, match=r"responses\[1\].*shape \(3,\)"):
        stack[1]
    with pytest.raises(pt.DataError, match=r"responses\[2\].*NaN"):
        stack[[2]]
    with pytest.raises(pt.DataError, match="at least one trial file"):
        TrialStack([], "responses")

import numpy as np
import pytest
import torch
from torch import nn

import probtwin as pt
from probtwin import transfer


def zscored_rows_correlation(x):
    """Each column z-scored over the rows, then the correlation of the rows (constant columns left out)."""
    x = x[:, x.std(0) > 1e-6]
    u = (x - x.mean(0)) / x.std(0)
    return np.corrcoef(u)


def test_similarity_matrix_is_the_correlation_of_unit_standardised_rows(rng):
    x = rng.normal(size=(6, 40)) * rng.uniform(0.1, 10, size=40) + rng.uniform(0, 50, size=40)  # unequal units
    s = transfer.similarity_matrix(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(s, zscored_rows_correlation(x), atol=1e-8)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-8)
    # a unit's scale and offset do not matter
    rescaled = x * rng.uniform(0.5, 5, size=40) + 7.0
    np.testing.assert_allclose(transfer.similarity_matrix(torch.as_tensor(rescaled)).numpy(), s, atol=1e-8)
    assert transfer.similarity_matrix(torch.randn(3, 5, 7)).shape == (3, 5, 5)
    silent = np.c_[x, np.zeros((6, 3)), np.full((6, 2), 4.0)]  # constant units do not count
    np.testing.assert_allclose(transfer.similarity_matrix(torch.as_tensor(silent)).numpy(), s, atol=1e-8)
    images = rng.uniform(size=(6, 1, 4, 4))
    np.testing.assert_allclose(
        transfer.pixel_similarity(images), zscored_rows_correlation(images.reshape(6, -1)), atol=1e-5
    )


def test_shuffled_similarity_keeps_values_not_images(rng):
    target = transfer.pixel_similarity(rng.uniform(size=(20, 1, 5, 5)))
    shuffled = transfer.shuffled_similarity(target, seed=3)
    np.testing.assert_allclose(np.sort(shuffled.ravel()), np.sort(target.ravel()))
    np.testing.assert_allclose(shuffled, shuffled.T)
    np.testing.assert_allclose(np.diag(shuffled), 1.0, atol=1e-5)
    assert not np.allclose(shuffled, target)
    per_draw = np.stack([target, 2 * target])
    np.testing.assert_allclose(transfer.shuffled_similarity(per_draw, seed=3)[0], shuffled)


@pytest.fixture(scope="module")
def small_twin():
    sim = pt.simulate.v1(n_neurons=12, n_images=120, image_size=(16, 24), seed=0)
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, posterior="readout")
    twin.fit(max_epochs=2, progress=False, seed=0)
    return twin, np.asarray(sim.recording.stimuli[:30])


def test_neural_similarity_is_that_of_the_twins_predictions(small_twin):
    twin, images = small_twin
    mean = twin.predict(images, num_samples=100, seed=0).mean
    np.testing.assert_allclose(transfer.neural_similarity(twin, images), zscored_rows_correlation(mean), atol=1e-4)
    draws = transfer.neural_similarity(twin, images, num_samples=4, seed=1)
    samples = twin.predict(images, num_samples=4, seed=1).samples
    assert draws.shape == (4, 30, 30)
    np.testing.assert_allclose(draws[2], zscored_rows_correlation(samples[2]), atol=1e-4)
    with pytest.raises(pt.DataError, match="similarity_images"):
        transfer.neural_similarity(twin, images[:1])
    with pytest.raises(pt.DataError, match="similarity_images.*input shape \\(n, 1, 16, 24\\)"):
        transfer.neural_similarity(twin, np.zeros((4, 1, 28, 28), np.float32))  # another size than the twin's


def test_representational_similarity_of_a_twin_and_of_a_classifier(small_twin, rng):
    twin, images = small_twin
    np.testing.assert_allclose(
        transfer.representational_similarity(twin, images, num_samples=3, seed=2),
        transfer.neural_similarity(twin, images, num_samples=3, seed=2),
    )
    model = transfer.DigitClassifier(hidden=32)
    colour = rng.uniform(0, 255, size=(7, 3, 56, 56)).astype(np.float32)  # adapted as the regulariser adapts
    with torch.no_grad():
        hidden = model.features(torch.as_tensor(transfer.adapt_images(colour, (1, 28, 28)))).numpy()
    got = transfer.representational_similarity(model, colour)
    assert got.shape == (7, 7)
    np.testing.assert_allclose(got, zscored_rows_correlation(hidden), atol=1e-4)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(9, 5))  # no features: its output
    x = rng.uniform(size=(6, 1, 3, 3)).astype(np.float32)
    with torch.no_grad():
        out = plain(torch.as_tensor(transfer.adapt_images(x, (1, 3, 3)))).numpy()
    np.testing.assert_allclose(transfer.representational_similarity(plain, x), zscored_rows_correlation(out), atol=1e-4)
    with pytest.raises(pt.DataError, match="images.*at least two"):
        transfer.representational_similarity(model, colour[:1])


def test_adapt_images_to_a_classifiers_input(rng):
    colour = rng.uniform(0, 255, size=(5, 3, 56, 56))
    out = transfer.adapt_images(colour, (1, 28, 28))
    assert out.shape == (5, 1, 28, 28) and out.min() == 0.0 and out.max() == pytest.approx(1.0)
    grey = colour.mean(1, keepdims=True)
    pooled = grey.reshape(5, 1, 28, 2, 28, 2).mean((3, 5))
    np.testing.assert_allclose(out, (pooled - pooled.min()) / (pooled.max() - pooled.min()), atol=1e-5)


@pytest.fixture(scope="module")
def digits(shared_data):
    images, labels = pt.datasets.mnist_digits(shared_data)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], labels[order]


def test_mnist_digits_load(digits):
    images, labels = digits
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and np.bincount(labels).tolist() == [500] * 10


def test_a_classifier_learns_digits_and_the_regulariser_pulls_its_representation(digits):
    images, labels = digits
    train, test, similar = slice(0, 1500), slice(1500, 2000), slice(2000, 2064)
    plain = transfer.fit_classifier(images[train], labels[train], epochs=4, progress_bar=False)
    assert transfer.accuracy(plain, images[test], labels[test]) > 0.85
    pulled = transfer.fit_classifier(
        images[train],
        labels[train],
        "pixel",
        similarity_images=images[similar],
        weight=1.0,
        epochs=4,
        progress_bar=False,
    )
    target = transfer.pixel_similarity(images[similar])
    off = ~np.eye(64, dtype=bool)

    def distance(model):
        s = transfer.representational_similarity(model, images[similar])  # the matrix the regulariser pulls
        return np.mean((s - target)[off] ** 2)

    assert distance(pulled) < 0.5 * distance(plain)
    assert transfer.accuracy(pulled, images[test], labels[test]) > 0.85  # and still learns the digits


def test_multitask_features_predict_the_responses(digits):
    images, labels = digits
    similar = images[2000:2200]
    # responses: a fixed random projection of the pixels, passed through a rectifier
    projection = np.random.default_rng(1).normal(size=(784, 20))
    responses = np.maximum(similar.reshape(200, -1) @ projection, 0)
    kwargs = dict(epochs=2, progress_bar=False)
    plain = transfer.fit_classifier(images[:1000], labels[:1000], **kwargs)
    multi = transfer.fit_classifier(
        images[:1000], labels[:1000], "multitask", similarity_images=similar, responses=responses, weight=5.0, **kwargs
    )

    def explained(model):  # held-out R^2 of a least-squares readout of the hidden features
        with torch.no_grad():
            f = model.features(torch.as_tensor(similar)).numpy()
        f = np.c_[f, np.ones(len(f))]
        z = (responses - responses.mean(0)) / responses.std(0)
        w = np.linalg.lstsq(f[:150], z[:150], rcond=None)[0]
        return 1 - np.mean((f[150:] @ w - z[150:]) ** 2) / np.mean(z[150:] ** 2)

    assert explained(multi) > explained(plain)


def test_classifier_input_errors(digits, small_twin):
    images, labels = digits[0][:100], digits[1][:100]
    with pytest.raises(pt.DataError, match="images.*\\[0, 1\\]"):
        transfer.fit_classifier(images * 255, labels)
    with pytest.raises(pt.DataError, match="labels"):
        transfer.fit_classifier(images, labels[:50])
    state = torch.get_rng_state()
    transfer.fit_classifier(images[:20], labels[:20], epochs=1, progress_bar=False)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator is left alone
    with pytest.raises(pt.DataError, match="similarity_images.*at least two"):
        transfer.fit_classifier(images, labels, "pixel", similarity_images=images[:1])
    with pytest.raises(pt.DataError, match="classes"):
        transfer.fit_classifier(images, labels, classes=int(labels.max()))
    assert transfer.fit_classifier(images[:10], labels[:10], classes=10, epochs=0).logits.out_features == 10
    with pytest.raises(pt.DataError, match="regularizer"):
        transfer.fit_classifier(images, labels, "brain")
    with pytest.raises(pt.DataError, match="twin"):
        transfer.fit_classifier(images, labels, "neural", similarity_images=images)
    with pytest.raises(pt.DataError, match="similarity_images"):
        transfer.fit_classifier(images, labels, "pixel")
    with pytest.raises(pt.DataError, match="responses"):
        transfer.fit_classifier(images, labels, "multitask", similarity_images=images)
    # the neural and shuffled regularisers run with a twin's images in its own format
    twin, twin_images = small_twin
    for kind in ("neural", "random"):
        model = transfer.fit_classifier(
            images,
            labels,
            kind,
            twin=twin,
            similarity_images=twin_images,
            num_samples=3,
            epochs=1,
            progress_bar=False,
        )
        assert isinstance(model, transfer.DigitClassifier)


class Linear(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_fgsm_is_the_signed_gradient_step_and_pgd_stays_in_the_ball(rng):
    weight = rng.normal(size=(3, 16))
    model = Linear(weight)
    x = rng.uniform(0.2, 0.8, size=(40, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    logits = x.reshape(40, -1) @ weight.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ weight  # d cross-entropy / d x, analytic
    expected = np.clip(x + 0.1 * np.sign(grad).reshape(x.shape), 0, 1)
    np.testing.assert_allclose(transfer.fgsm(model, x, y, 0.1), expected, atol=1e-6)
    adv = transfer.pgd(model, x, y, 0.1, steps=5)
    assert np.abs(adv - x).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert transfer.accuracy(model, adv, y) <= transfer.accuracy(model, x, y)
    with pytest.raises(pt.DataError, match="epsilon"):
        transfer.fgsm(model, x, y, 2.0)


def test_noise_and_corruptions(digits):
    images = digits[0][:20]
    noisy = transfer.gaussian_noise(images, 0.2, seed=0)
    assert noisy.shape == images.shape and noisy.min() >= 0 and noisy.max() <= 1
    unclipped = (images > 0.3) & (images < 0.7)
    assert np.std((noisy - images)[unclipped]) == pytest.approx(0.2, rel=0.2)
    mild, strong = (transfer.corrupt(images, "gaussian_noise", s) for s in (1, 5))
    assert mild.shape == images.shape and 0 <= strong.min() and strong.max() <= 1
    assert np.abs(strong - images).mean() > np.abs(mild - images).mean()
    np.testing.assert_array_equal(
        transfer.corrupt(images, "contrast", 3, seed=1), transfer.corrupt(images, "contrast", 3, seed=1)
    )
    with pytest.raises(pt.DataError, match="corruption"):
        transfer.corrupt(images, "rain", 1)
    with pytest.raises(pt.DataError, match="severity"):
        transfer.corrupt(images, "fog", 6)


def test_robustness_report(digits):
    images, labels = digits
    model = transfer.fit_classifier(images[:500], labels[:500], epochs=1, progress_bar=False)
    scores = transfer.robustness(
        model,
        images[500:600],
        labels[500:600],
        epsilons=(0.1,),
        noise_stds=(0.3,),
        corruptions=("fog",),
        severities=(1, 5),
    )
    assert set(scores) == {"clean", "noise_0.3", "corruption_fog", "corruption_mean", "fgsm_0.1", "pgd_0.1"}
    assert scores["pgd_0.1"] <= scores["clean"] and scores["corruption_mean"] == scores["corruption_fog"]

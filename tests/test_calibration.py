"""kit.inference.calibration: candidate features by hand, the logistic fit, cross-fitting, fallback."""
import numpy as np
import pytest

from kit.errors import KitError
from kit.inference.calibration import (FEATURES, Calibration, calibrated_ranking, candidate_features,
                                       cross_fitted_ranking, fit_calibration, halves)


def test_candidate_features_by_hand():
    # one query: kNN classes 0, 1; candidates of classes 0, 1, 2 with 5, 20, 0 inliers
    base = np.array([[0, 1, -1]])
    sims = np.array([[0.8, 0.6, 0.7]])
    inliers = np.array([[5, 20, 0]])
    labels = np.array([[0, 1, 2]])
    classes, f = candidate_features(base, sims, inliers, labels, min_inliers=10, reference=[0.3], width=4)
    assert classes.tolist() == [[0, 1, -1, -1]]       # class 2: not a kNN class, no inliers
    assert f.shape == (1, 4, len(FEATURES))
    np.testing.assert_allclose(f[0, 0], [0.8, 0.2, np.log1p(5), -np.log1p(15), 1, 0, 0.3])
    np.testing.assert_allclose(f[0, 1], [0.6, -0.2, np.log1p(20), np.log1p(15), 0, 1, 0.3])


def test_candidate_features_adds_verified_classes_outside_knn():
    base = np.array([[0, -1]])
    classes, f = candidate_features(base, np.array([[0.9, 0.5]]), np.array([[0, 30]]), np.array([[0, 3]]), 10)
    assert classes[0, :2].tolist() == [0, 3] and (classes[0, 2:] == -1).all()
    assert f[0, 1, FEATURES.index("verified")] == 1 and f[0, 0, FEATURES.index("is_knn_class")] == 1


def _synthetic(n=200, seed=0):
    """Queries whose right class is the verified one when it has inliers, else the kNN class half the time;
    a third of them non-landmarks (truth -1)."""
    rng = np.random.default_rng(seed)
    base = np.stack([np.zeros(n, int), np.ones(n, int)], 1)
    sims = rng.uniform(0.4, 0.9, (n, 2))
    sims[:, 0] = np.maximum(sims[:, 0], sims[:, 1])
    inliers = np.zeros((n, 2), int)
    inliers[:, 1] = np.where(rng.random(n) < 0.5, rng.integers(15, 60, n), rng.integers(0, 6, n))
    truth = np.where(inliers[:, 1] >= 15, 1, 0)
    truth[rng.random(n) < 1 / 3] = -1
    return base, sims, inliers, base.copy(), truth


def test_fit_learns_that_inliers_beat_similarity():
    base, sims, inliers, labels, truth = _synthetic()
    classes, f = candidate_features(base, sims, inliers, labels, 10)
    model = fit_calibration(f, classes, truth, 10)
    assert model is not None and model.positives == int((truth >= 0).sum())
    ranked, scores = calibrated_ranking(model, classes, f, topk=2)
    strong = inliers[:, 1] >= 15
    assert (ranked[strong, 0] == 1).all()             # the verified class beats the kNN class
    assert (scores[:, 0] >= scores[:, 1]).all() and ((scores >= 0) & (scores <= 1)).all()
    # a dict round trip gives the same probabilities; another feature list is refused
    again = Calibration.from_dict(model.to_dict())
    np.testing.assert_allclose(again.probability(f), model.probability(f))
    with pytest.raises(KitError, match="features"):
        Calibration.from_dict({**model.to_dict(), "features": ["similarity"]})


def test_too_small_a_validation_set_gives_no_model():
    base, sims, inliers, labels, truth = _synthetic(n=30)
    classes, f = candidate_features(base, sims, inliers, labels, 10)
    assert fit_calibration(f, classes, truth, 10, min_examples=20) is None
    assert fit_calibration(f, classes, np.full(30, -1), 10, min_examples=1) is None   # no right candidate


def test_cross_fitted_ranking_uses_the_other_half():
    base, sims, inliers, labels, truth = _synthetic()
    classes, f = candidate_features(base, sims, inliers, labels, 10)
    ids = np.array([f"q{i}" for i in range(len(base))])
    got_labels, got_scores = cross_fitted_ranking(f, classes, truth, ids, 10, topk=2)
    half = halves(ids)
    assert set(half.tolist()) == {0, 1} and halves(ids[::-1]).tolist() == half[::-1].tolist()
    for h in (0, 1):
        model = fit_calibration(f[half != h], classes[half != h], truth[half != h], 10, 10)
        want_l, want_s = calibrated_ranking(model, classes[half == h], f[half == h], 2)
        np.testing.assert_array_equal(got_labels[half == h], want_l)
        np.testing.assert_allclose(got_scores[half == h], want_s)


def test_calibrated_ranking_pads_to_topk():
    model = Calibration([0.0] * len(FEATURES), [1.0] * len(FEATURES), [0, 0, 1, 0, 0, 0, 0], 0.0, 10)
    classes = np.array([[4, 7, -1]])
    f = np.zeros((1, 3, len(FEATURES)))
    f[0, :, 2] = [1.0, 3.0, 9.0]        # log inliers: class 7 first; the -1 slot never ranks
    labels, scores = calibrated_ranking(model, classes, f, topk=5)
    assert labels.tolist() == [[7, 4, -1, -1, -1]]
    np.testing.assert_allclose(scores[0, :2], [1 / (1 + np.exp(-3)), 1 / (1 + np.exp(-1))], rtol=1e-6)
    assert scores[0, 2:].tolist() == [0, 0, 0]


def test_only_a_verified_class_replaces_the_knn_class():
    """An unverified class keeps its place behind the kNN class whatever its P (similarity alone is what
    the kNN order measured); a verified class with a higher P than the kNN class's takes first place."""
    coef = [0, 1, 0, 0, 0, 0, 0]       # P rises with the similarity margin only
    model = Calibration([0.0] * len(FEATURES), [1.0] * len(FEATURES), coef, 0.0, 10)
    classes = np.array([[3, 5, 8], [3, 5, 8]])
    f = np.zeros((2, 3, len(FEATURES)))
    f[:, 0, FEATURES.index("is_knn_class")] = 1
    f[:, :, 1] = [0.0, 2.0, 1.0]                      # class 5 has the highest P, class 8 the next
    f[1, 2, FEATURES.index("verified")] = 1           # query 1: class 8 is verified
    labels, scores = calibrated_ranking(model, classes, f, topk=3)
    assert labels[:, 0].tolist() == [3, 8]
    np.testing.assert_allclose(scores[1, 0], 1 / (1 + np.exp(-1)), rtol=1e-6)

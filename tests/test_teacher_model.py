"""The teacher model: roles of classes in answers and the EM posterior."""

import numpy as np
import pytest

pytest.importorskip("torch")

from skcandist.exceptions import InvalidInputError  # noqa: E402
from skcandist.teacher_model import (  # noqa: E402
    OTHER,
    OUTSIDE,
    PRIMARY,
    SOLE,
    answer_roles,
    fit_teacher_model,
)


def _blobs(n=300, separation=3.0, random_state=0):
    rng = np.random.RandomState(random_state)
    y = rng.randint(0, 2, n)
    x = rng.normal(size=(n, 8))
    x[:, 0] += separation * (2 * y - 1)
    return x, y


def test_roles_of_sole_primary_other_and_outside():
    roles = answer_roles(
        [[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], primary=[0, 1, -1, 2]
    )
    assert roles.tolist() == [
        [SOLE, OUTSIDE, OUTSIDE],
        [OTHER, PRIMARY, OUTSIDE],
        [OUTSIDE, OTHER, OTHER],
        [OTHER, OTHER, PRIMARY],
    ]


def test_roles_without_a_preference_and_with_one_outside_the_set():
    assert (answer_roles([[1, 1, 0]]) == [[OTHER, OTHER, OUTSIDE]]).all()
    # A preference the set does not hold is no preference.
    assert (answer_roles([[1, 1, 0]], primary=[2]) == [[OTHER, OTHER, OUTSIDE]]).all()


def test_roles_reject_a_primary_of_the_wrong_length():
    with pytest.raises(InvalidInputError, match="primary"):
        answer_roles([[1, 0], [0, 1]], primary=[0])


def test_wrong_single_labels_are_moved_out_of_their_set_on_separable_data():
    x, y = _blobs()
    rng = np.random.RandomState(1)
    single = y.copy()
    flipped = rng.choice(len(y), 30, replace=False)
    single[flipped] = 1 - single[flipped]
    cands = np.eye(2)[single]
    model = fit_teacher_model(x, cands, single, random_state=0)
    post = model.posterior.argmax(axis=1)
    assert np.allclose(model.posterior.sum(axis=1), 1.0)
    # The teacher is right on 90%; the posterior corrects most of its misses.
    assert (post[flipped] == y[flipped]).mean() >= 0.8
    assert (post == y).mean() >= 0.95
    assert 0.0 < model.theta[OUTSIDE] < 0.3


def test_the_preferred_label_decides_where_the_features_cannot():
    rng = np.random.RandomState(0)
    n = 400
    y = rng.randint(0, 2, n)
    x = rng.normal(size=(n, 8))  # features carry nothing
    primary = y.copy()
    wrong = rng.rand(n) < 0.2
    primary[wrong] = 1 - primary[wrong]
    cands = np.ones((n, 2))  # every set names both labels
    model = fit_teacher_model(x, cands, primary, random_state=0)
    assert model.theta[PRIMARY] > model.theta[OTHER]
    assert (model.posterior.argmax(axis=1) == primary).mean() >= 0.95
    # Without the preference, both labels of every set stay equally likely.
    blind = fit_teacher_model(x, cands, None, random_state=0)
    assert np.abs(blind.posterior[:, 0] - 0.5).max() < 0.25
    assert blind.theta[PRIMARY] == 0.0


def test_same_seed_same_model_and_inputs_untouched():
    x, y = _blobs(n=120)
    cands = np.eye(2)[y]
    cands[:20] = 1
    before = cands.copy()
    a = fit_teacher_model(x, cands, y, random_state=3)
    b = fit_teacher_model(x, cands, y, random_state=3)
    assert np.array_equal(a.posterior, b.posterior)
    assert np.array_equal(cands, before)


@pytest.mark.parametrize(
    "features, cands, match",
    [
        (np.zeros((20, 3)), np.ones((19, 2)), "one row per text"),
        (np.zeros((20, 3)), np.zeros((20, 2)), "at least one"),
        (np.zeros((6, 3)), np.ones((6, 2)), "too few"),
        (np.full((20, 3), np.nan), np.ones((20, 2)), "NaN"),
    ],
)
def test_bad_input(features, cands, match):
    with pytest.raises(InvalidInputError, match=match):
        fit_teacher_model(features, cands)


def test_bad_rounds():
    with pytest.raises(InvalidInputError, match="n_rounds"):
        fit_teacher_model(np.zeros((20, 3)), np.ones((20, 2)), n_rounds=0)


@pytest.mark.parametrize("lda_iter", [0, -1, 1.5])
def test_bad_lda_iterations(lda_iter):
    # 0 or a negative count used to skip the generative view without a word.
    with pytest.raises(InvalidInputError, match="lda_iter"):
        fit_teacher_model(np.zeros((20, 3)), np.ones((20, 2)), lda_iter=lda_iter)


# ------------------------------------------------- the generative feature view
def test_oof_view_is_the_last_rounds_prior_times_the_likelihood():
    x, y = _blobs(separation=0.7, random_state=2)
    cands = np.eye(2)[y]
    cands[:100] = 1
    model = fit_teacher_model(x, cands, y, random_state=0, feature_view="oof")
    expected = model.oof_probs * model.likelihood
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.posterior, expected, atol=1e-12)
    lda = fit_teacher_model(x, cands, y, random_state=0)
    assert np.abs(lda.posterior - model.posterior).max() > 1e-3


def test_lda_stage_learns_class_shares_and_means_from_unlabelled_scores():
    """With answers that say nothing (every set holds both classes), the
    posterior is the two-Gaussian mixture's: EM finds the 70/30 shares and the
    Bayes labels of well-separated scores, from the scores alone."""
    from skcandist.teacher_model import _lda_em, answer_roles

    rng = np.random.RandomState(0)
    y = (rng.rand(2000) < 0.3).astype(int)
    scores = rng.normal(size=(2000, 1)) + np.where(y, 2.5, -2.5)[:, None]
    roles = answer_roles(np.ones((2000, 2)))
    start = np.full((2000, 2), 0.5)
    start[:, 1] += 0.2 * np.sign(scores[:, 0])  # off the saddle point
    start[:, 0] = 1.0 - start[:, 1]  # shares 58/42 at the start
    post, theta = _lda_em(scores, start, roles, n_iter=200, shrinkage=0.0)
    assert abs(post[:, 1].mean() - 0.3) < 0.02
    assert (post.argmax(axis=1) == y).mean() > 0.99
    assert theta[OUTSIDE] == 0.0 and theta[SOLE] == 0.0


def test_lda_stage_follows_the_teacher_where_the_scores_carry_nothing():
    from skcandist.teacher_model import _lda_em, answer_roles

    rng = np.random.RandomState(1)
    y = rng.randint(0, 2, 500)
    single = np.where(rng.rand(500) < 0.85, y, 1 - y)
    cands = np.eye(2)[single]
    roles = answer_roles(cands, single)
    scores = rng.normal(size=(500, 1))  # independent of the class
    start = 0.8 * cands + 0.1
    post, theta = _lda_em(scores, start, roles, n_iter=200, shrinkage=0.1)
    assert (post.argmax(axis=1) == single).all()
    assert theta[SOLE] > 0.8 and theta[OUTSIDE] < 0.2


@pytest.mark.parametrize(
    "kwargs, match",
    [({"feature_view": "gmm"}, "feature_view"), ({"lda_shrinkage": 1.5}, "shrinkage")],
)
def test_bad_feature_view_settings_are_refused(kwargs, match):
    x, y = _blobs(n=40)
    with pytest.raises(InvalidInputError, match=match):
        fit_teacher_model(x, np.eye(2)[y], **kwargs)

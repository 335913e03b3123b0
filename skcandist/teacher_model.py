"""How reliable is the teacher? A model of its answers learnt without gold labels.

The distribution refinery of the CanDist paper starts every target uniform over
the candidate set and trusts the set completely: a label outside it is only ever
reached through the student's own confident predictions. Two things the teacher
says are then lost:

- which label it preferred (the single label of the "single" prompt, the first
  answer of "add", the top label of "all");
- how often, and for which classes, each kind of answer is right: on a binary task
  a set naming both labels carries no information by itself, yet the texts that
  get such sets are rarely balanced between the classes.

This module estimates both from the texts and the candidate sets alone, in the
way of Dawid and Skene (1979): the teacher's answer is a noisy observation of the
hidden class, the student's out-of-fold prediction is a second, independent one,
and expectation-maximisation alternates between them.

Every (text, class) pair has a *role* in the teacher's answer: the class is the
sole candidate (:data:`SOLE`), the preferred one of several (:data:`PRIMARY`),
another member of the set (:data:`OTHER`), or outside the set (:data:`OUTSIDE`).
The model learns ``theta[r]``, the probability that the true class has role ``r``
in the teacher's answer; the true class is then spread evenly over the classes
sharing that role in the answer. The *likelihood* of class ``j`` for text ``i``
is ``theta[r_ij] / n_i(r_ij)``, and the posterior is the out-of-fold prediction
times that likelihood, normalised. The rates are shared by all classes: rates
per class were tried while this was developed and were less stable (EM let a
rare or minority class absorb the unsure sets, on TREC and SMS spam).

The out-of-fold predictions come from softmax regressions on fixed sentence
embeddings, trained on the current posterior of the other folds, so that a text's
own (possibly wrong) target never shapes the prediction that judges it (the
strength of confident learning, Northcutt et al., 2021).

Those predictions were trained on noisy targets, so their confidence is not to
be taken at face value. By default (``feature_view="lda"``) the last stage
treats them as a second *generative* view: the out-of-fold log-probabilities of
a text of class ``j`` are drawn from a Gaussian with mean ``mu_j`` and a
covariance shared by the classes (linear discriminant analysis on the scores),
with class shares ``pi``, fitted to the posterior of the last round; the
posterior is then recomputed with these densities in place of the
probabilities, so how far the classes' scores stand apart decides how much
the features weigh against the teacher. ``feature_view="oof"`` keeps the
out-of-fold probabilities as the prior (the posterior of the last round).

:func:`fit_teacher_model` is used by :class:`skcandist.CanDistClassifier`
(``teacher_model="em"``, the default): its posterior is the refinery's initial
target and its re-normalisation weights.
"""

from dataclasses import dataclass

import numpy as np

from .exceptions import InvalidInputError

__all__ = [
    "SOLE",
    "PRIMARY",
    "OTHER",
    "OUTSIDE",
    "TeacherModel",
    "answer_roles",
    "fit_teacher_model",
]

#: Roles of a class in the teacher's answer (see :func:`answer_roles`).
SOLE, PRIMARY, OTHER, OUTSIDE = 0, 1, 2, 3
_N_ROLES = 4


@dataclass
class TeacherModel:
    """What :func:`fit_teacher_model` learnt.

    Attributes
    ----------
    posterior : ndarray of shape (n_samples, n_classes)
        The probability of each class for each text, given its embedding (out of
        fold) and the teacher's answer.
    likelihood : ndarray of shape (n_samples, n_classes)
        ``P(answer_i | class j)`` up to a factor per text: what the teacher's
        answer alone says of each class.
    theta : ndarray of shape (4,)
        ``theta[r]``: the probability that the true class has role ``r`` in the
        teacher's answer (:data:`SOLE`, :data:`PRIMARY`, :data:`OTHER`,
        :data:`OUTSIDE`); the learnt reliability of each kind of answer.
    oof_probs : ndarray of shape (n_samples, n_classes)
        The last round's out-of-fold predictions.
    roles : ndarray of shape (n_samples, n_classes)
        From :func:`answer_roles`.
    """

    posterior: np.ndarray
    likelihood: np.ndarray
    theta: np.ndarray
    oof_probs: np.ndarray
    roles: np.ndarray


def answer_roles(candidates, primary=None):
    """The role of every class in every answer.

    Parameters
    ----------
    candidates : array-like of shape (n_samples, n_classes)
        0/1 candidate matrix; every row holds at least one candidate.
    primary : array-like of shape (n_samples,), default=None
        The teacher's preferred label per text (a column index inside the set).
        None, or -1 for a text, where the teacher named no preference: every
        member of a set of several is then :data:`OTHER`.

    Returns
    -------
    ndarray of int, shape (n_samples, n_classes)

    Examples
    --------
    >>> answer_roles([[1, 0, 0], [1, 1, 0], [0, 1, 1]], primary=[0, 1, -1]).tolist()
    [[0, 3, 3], [2, 1, 3], [3, 2, 2]]
    """
    cands = np.asarray(candidates) > 0
    n, _ = cands.shape
    roles = np.where(cands, OTHER, OUTSIDE)
    size = cands.sum(axis=1)
    rows = np.arange(n)
    sole = size == 1
    roles[sole, cands[sole].argmax(axis=1)] = SOLE
    if primary is not None:
        primary = np.asarray(primary, dtype=int)
        if primary.shape != (n,):
            raise InvalidInputError(
                f"primary holds {primary.shape} labels for {n} candidate rows."
            )
        known = (primary >= 0) & ~sole
        inside = np.zeros(n, dtype=bool)
        inside[known] = cands[rows[known], primary[known]]
        roles[rows[inside], primary[inside]] = PRIMARY
    return roles


def _softmax_regression(x, targets, x_new, *, epochs, lr, weight_decay, seed):
    """Full-batch softmax regression on soft targets; probabilities of ``x_new``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x_t = torch.as_tensor(x, dtype=torch.float32)
    t_t = torch.as_tensor(targets, dtype=torch.float32)
    layer = torch.nn.Linear(x_t.shape[1], t_t.shape[1])
    with torch.no_grad():
        bound = 1.0 / np.sqrt(x_t.shape[1])
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = -(t_t * torch.log_softmax(layer(x_t), dim=1)).sum(dim=1).mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = layer(torch.as_tensor(x_new, dtype=torch.float32))
        return torch.softmax(logits, dim=1).double().numpy()


def _out_of_fold(features, targets, n_splits, seed, **fit):
    from sklearn.model_selection import KFold

    probs = np.empty(targets.shape, dtype=float)
    folds = KFold(n_splits, shuffle=True, random_state=seed)
    for k, (train, held_out) in enumerate(folds.split(features)):
        probs[held_out] = _softmax_regression(
            features[train], targets[train], features[held_out], seed=seed + k, **fit
        )
    return probs


def _lda_scores(probs):
    """The scores of the generative view: log-probabilities, centred per text
    (binary: the one log-odds)."""
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    if logp.shape[1] == 2:
        return logp[:, 1:] - logp[:, :1]
    return logp - logp.mean(axis=1, keepdims=True)


def _role_shares(roles):
    """How many classes share each (text, class) pair's role in the answer."""
    counts = np.stack([(roles == r).sum(axis=1) for r in range(_N_ROLES)], axis=1)
    return np.take_along_axis(counts, roles, axis=1)


def _answer_rates(roles, posterior):
    """``theta``: the posterior's mass on each role, as shares (M-step)."""
    mass = np.bincount(roles.ravel(), posterior.ravel(), minlength=_N_ROLES)
    return mass / mass.sum()


def _lda_em(scores, posterior, roles, *, n_iter, shrinkage, tol=1e-6):
    """EM of the latent-class model with Gaussian class-conditional scores.

    Returns the posterior and the answer rates.
    """
    n, dim = scores.shape
    share = _role_shares(roles)
    for _ in range(n_iter):
        weight = posterior.sum(axis=0)
        pi = np.maximum(weight / n, 1e-12)
        mu = (posterior.T @ scores) / np.maximum(weight, 1e-12)[:, None]
        # The shared covariance: the posterior-weighted scatter around the means.
        centred = scores.T @ scores - (mu.T * weight) @ mu
        cov = centred / n
        cov = (1.0 - shrinkage) * cov + shrinkage * np.eye(dim) * np.trace(cov) / dim
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(dim))
        # Mahalanobis distances through the Cholesky factor: |L^-1 (s - mu)|^2.
        a = np.linalg.solve(chol, scores.T).T
        b = np.linalg.solve(chol, mu.T).T
        dist = (a**2).sum(1)[:, None] - 2.0 * a @ b.T + (b**2).sum(1)[None, :]
        likelihood = _answer_rates(roles, posterior)[roles] / share
        log_post = (
            np.log(pi)[None, :] - 0.5 * dist + np.log(np.maximum(likelihood, 1e-12))
        )
        log_post -= log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post)
        new /= new.sum(axis=1, keepdims=True)
        change = np.abs(new - posterior).max()
        posterior = new
        if change < tol:
            break
    return posterior, _answer_rates(roles, posterior)


def fit_teacher_model(
    features,
    candidates,
    primary=None,
    *,
    n_rounds=4,
    feature_view="lda",
    lda_iter=1,
    lda_shrinkage=0.1,
    n_splits=5,
    primary_prior=2.0,
    outside_prior=0.1,
    epochs=150,
    lr=0.03,
    weight_decay=0.01,
    random_state=0,
):
    """Learn how often each kind of teacher answer is right, without gold labels.

    Expectation-maximisation over the hidden classes (see the module docstring):
    the posterior starts at the candidate sets (uniform over each set, the
    preferred label weighted ``primary_prior`` times the others); then, for
    ``n_rounds`` rounds, out-of-fold softmax regressions on ``features`` are
    trained on the current posterior (M-step for the student), ``theta`` is
    re-estimated from it (M-step for the teacher) and the posterior is
    recomputed (E-step).

    Parameters
    ----------
    features : array-like of shape (n_samples, dim)
        Fixed text representations (e.g. frozen sentence embeddings).
    candidates : array-like of shape (n_samples, n_classes)
        0/1 candidate matrix.
    primary : array-like of shape (n_samples,), default=None
        The teacher's preferred label per text (-1 or None where unknown).
    n_rounds : int, default=4
    feature_view : {"lda", "oof"}, default="lda"
        How the out-of-fold predictions of the last round enter the posterior:
        "lda" as scores with Gaussian class-conditional densities learnt with
        the answer rates (see the module docstring), "oof" as the prior.
    lda_iter : int, default=1
        EM iterations of the "lda" stage (fewer where the posterior stops
        changing). One fits the Gaussians and class shares to the posterior of
        the last round and recomputes it: a calibration of the out-of-fold
        scores against the answers. Run towards convergence, the mixture goes
        on to split the scores along whatever structure they have, whether or
        not it is the classes' (with scores that carry nothing, it then
        overrules the teacher). ``benchmarks/probe_teacher_trust.py`` measures
        1, 3, 10 and 100.
    lda_shrinkage : float in [0, 1], default=0.1
        Shrinkage of the shared covariance towards a multiple of the identity
        (many classes, few texts per class).
    n_splits : int, default=5
        Folds of the out-of-fold predictions.
    primary_prior : float, default=2.0
        Initial weight of the preferred label relative to the set's other
        members (1 ignores the preference at the start).
    outside_prior : float, default=0.1
        Initial share of each text's mass spread over the classes outside its
        set, so that EM can learn how often the teacher misses (starting at 0,
        it would assume the teacher never does).
    epochs, lr, weight_decay : default=150, 0.03, 0.01
        Full-batch AdamW training of each softmax regression.
    random_state : int, default=0

    Returns
    -------
    TeacherModel

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> x = rng.normal(size=(200, 5)) + 2.0 * y[:, None]
    >>> cands = np.eye(2)[y]
    >>> cands[:40] = 1  # unsure on 40 texts
    >>> model = fit_teacher_model(x, cands, primary=y, random_state=0)
    >>> float((model.posterior.argmax(axis=1) == y).mean()) > 0.95
    True
    """
    x = np.asarray(features, dtype=np.float32)
    cands = np.asarray(candidates, dtype=float)
    if x.ndim != 2 or cands.ndim != 2 or x.shape[0] != cands.shape[0]:
        raise InvalidInputError(
            f"features {x.shape} and candidates {cands.shape} must be 2-D with one "
            "row per text."
        )
    if (cands.sum(axis=1) == 0).any():
        raise InvalidInputError("every candidate row needs at least one candidate.")
    n = cands.shape[0]
    if not np.isfinite(x).all():
        raise InvalidInputError("features holds NaN or infinite values.")
    if n < 2 * n_splits:
        raise InvalidInputError(
            f"{n} texts are too few for {n_splits} out-of-fold splits."
        )
    if not isinstance(n_rounds, (int, np.integer)) or n_rounds < 1:
        raise InvalidInputError(f"n_rounds must be an integer >= 1, not {n_rounds!r}.")
    if not isinstance(lda_iter, (int, np.integer)) or lda_iter < 1:
        raise InvalidInputError(f"lda_iter must be an integer >= 1, not {lda_iter!r}.")
    if feature_view not in ("lda", "oof"):
        raise InvalidInputError(
            f"feature_view must be 'lda' or 'oof', not {feature_view!r}."
        )
    if not 0.0 <= lda_shrinkage <= 1.0:
        raise InvalidInputError(
            f"lda_shrinkage must be in [0, 1], not {lda_shrinkage!r}."
        )
    roles = answer_roles(cands, primary)
    share = _role_shares(roles)

    prior = cands.copy()
    prior[roles == PRIMARY] = primary_prior
    prior /= prior.sum(axis=1, keepdims=True)
    # Some mass outside every set, or the teacher would be assumed never to miss.
    outside = 1.0 - cands
    n_out = outside.sum(axis=1, keepdims=True)
    outside = np.divide(outside, n_out, out=np.zeros_like(outside), where=n_out > 0)
    miss = np.where(n_out > 0, outside_prior, 0.0)
    posterior = (1.0 - miss) * prior + miss * outside
    fit = dict(epochs=epochs, lr=lr, weight_decay=weight_decay)
    for round_ in range(n_rounds):
        # M-step (student), M-step (teacher), E-step.
        probs = _out_of_fold(x, posterior, n_splits, random_state + 97 * round_, **fit)
        theta = _answer_rates(roles, posterior)
        likelihood = theta[roles] / share
        posterior = probs * likelihood
        posterior /= posterior.sum(axis=1, keepdims=True)
    if feature_view == "lda":
        posterior, theta = _lda_em(
            _lda_scores(probs),
            posterior,
            roles,
            n_iter=lda_iter,
            shrinkage=lda_shrinkage,
        )
        likelihood = theta[roles] / share
    return TeacherModel(posterior, likelihood, theta, probs, roles)

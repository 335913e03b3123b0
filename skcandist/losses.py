"""Partial-label losses and the distribution refinery, as pure torch functions.

This is the functional core of :class:`skcandist.CanDistClassifier`: every
function takes tensors (logits, probabilities, a dense 0/1 candidate matrix ``S``
of shape (n, C), per-sample targets) and returns tensors, with no state. The
estimator keeps the per-sample buffers and calls these functions.

The refinery (Xia et al., ACL 2025, Eqs. 1-5):

- :func:`renormalize` -- Eq. 1, the student's prediction re-normalised over the
  candidate set (the PRODEN / RC target);
- :func:`refinery_groups` -- Eqs. 2-4, once per epoch: the out-of-candidate
  filter, the class-wise small-loss selection and the confident
  out-of-candidate samples;
- :func:`refinery_targets` -- the target of each sample for Eq. 5 (sharpened,
  plain, one-hot, or none);
- :func:`soft_cross_entropy` -- Eq. 5's per-sample term.

The partial-label baselines: :func:`cc_loss` (CC), :func:`lws_loss` with
:func:`lws_weights` (LWS), :func:`cavl_targets` (CAVL); PRODEN is
:func:`soft_cross_entropy` against :func:`renormalize` targets.
"""

import torch
import torch.nn.functional as F

__all__ = [
    "IN",
    "SMALL_LOSS",
    "CONFIDENT_OUT",
    "OUT",
    "uniform_targets",
    "renormalize",
    "sharpen",
    "soft_cross_entropy",
    "refinery_groups",
    "refinery_targets",
    "consistency_loss",
    "consistency_term",
    "mixup",
    "cc_loss",
    "lws_weights",
    "lws_loss",
    "cavl_targets",
]

#: Group codes of :func:`refinery_groups`.
IN, SMALL_LOSS, CONFIDENT_OUT, OUT = 0, 1, 2, 3

_EPS = 1e-12


def uniform_targets(candidates):
    """Uniform distributions over each candidate set (the initial q of Eq. 1).

    Parameters
    ----------
    candidates : torch.Tensor of shape (n, C)
        0/1 candidate matrix; every row holds at least one candidate.

    Returns
    -------
    torch.Tensor of shape (n, C)

    Examples
    --------
    >>> uniform_targets(torch.tensor([[1.0, 1.0, 0.0]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    candidates = candidates.float()
    return candidates / candidates.sum(dim=1, keepdim=True).clamp(min=1.0)


def renormalize(probs, candidates):
    """Eq. 1: the prediction restricted to the candidate set and re-normalised.

    Parameters
    ----------
    probs : torch.Tensor of shape (n, C)
        The student's softmax output.
    candidates : torch.Tensor of shape (n, C)

    Returns
    -------
    torch.Tensor of shape (n, C)
        ``q_ij = [j in s_i] p_ij / sum_{k in s_i} p_ik``; uniform over ``s_i``
        where the prediction gives the candidates no mass at all.

    Examples
    --------
    >>> renormalize(torch.tensor([[0.2, 0.6, 0.2]]), torch.tensor([[1.0, 1.0, 0.0]]))
    tensor([[0.2500, 0.7500, 0.0000]])
    """
    masked = probs * candidates
    total = masked.sum(dim=1, keepdim=True)
    uniform = uniform_targets(candidates)
    return torch.where(total > _EPS, masked / total.clamp(min=_EPS), uniform)


def sharpen(targets, gamma):
    """Sharpen distributions: ``q ** (1 / gamma)``, re-normalised.

    Parameters
    ----------
    targets : torch.Tensor of shape (n, C)
    gamma : float in (0, 1]
        1 leaves the targets unchanged; smaller is sharper.

    Returns
    -------
    torch.Tensor of shape (n, C)

    Examples
    --------
    >>> sharpen(torch.tensor([[0.25, 0.75]]), 0.5)
    tensor([[0.1000, 0.9000]])
    """
    powered = targets.clamp(min=0) ** (1.0 / gamma)
    return powered / powered.sum(dim=1, keepdim=True).clamp(min=_EPS)


def soft_cross_entropy(logits, targets):
    """Per-sample cross-entropy of ``softmax(logits)`` against soft targets.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
    targets : torch.Tensor of shape (n, C)
        Rows summing to one.

    Returns
    -------
    torch.Tensor of shape (n,)

    Examples
    --------
    >>> soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    tensor([0.6931])
    """
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)


def refinery_groups(
    probs,
    targets,
    candidates,
    *,
    delta=0.5,
    tau=0.99,
    filter_out_of_candidate=True,
    classwise_selection=True,
    small_loss_selection=True,
    confident_targets=True,
):
    """Eqs. 2-4: split the samples into the refinery's groups (once per epoch).

    Parameters
    ----------
    probs : torch.Tensor of shape (n, C)
        The student's latest prediction of every sample.
    targets : torch.Tensor of shape (n, C)
        The current re-normalised targets q.
    candidates : torch.Tensor of shape (n, C)
    delta : float in [0, 1], default=0.5
        Fraction of each predicted class (within D_in) kept as small-loss
        samples (Eq. 3).
    tau : float, default=0.99
        Confidence above which an out-of-candidate sample gets its own argmax
        as a one-hot target (Eq. 4); 1.0 disables it in effect.
    filter_out_of_candidate : bool, default=True
        Eq. 2. If False, every sample is in D_in.
    classwise_selection : bool, default=True
        Select the fraction ``delta`` within each predicted class; if False,
        over D_in as a whole.
    small_loss_selection : bool, default=True
        If False, no sample is selected (D_sl is empty).
    confident_targets : bool, default=True
        If False, D_hc is empty (out-of-candidate samples get no target).

    Returns
    -------
    groups : torch.LongTensor of shape (n,)
        :data:`IN` (D_in - D_sl), :data:`SMALL_LOSS` (D_sl),
        :data:`CONFIDENT_OUT` (D_hc) or :data:`OUT` (D_out - D_hc).
    predicted : torch.LongTensor of shape (n,)
        The argmax over all classes (the one-hot target of D_hc).

    Examples
    --------
    >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.995, 0.005], [0.7, 0.3]])
    >>> cands = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    >>> groups, pred = refinery_groups(probs, renormalize(probs, cands), cands)
    >>> groups.tolist()
    [1, 0, 2, 3]
    """
    n = probs.shape[0]
    predicted = probs.argmax(dim=1)
    in_set = candidates.gather(1, predicted[:, None]).squeeze(1) > 0
    if not filter_out_of_candidate:
        in_set = torch.ones_like(in_set)
    groups = torch.full((n,), IN, dtype=torch.long, device=probs.device)
    out = ~in_set
    confident = out & (probs.max(dim=1).values > tau)
    groups[out] = OUT
    if confident_targets:
        groups[confident] = CONFIDENT_OUT
    if small_loss_selection and delta > 0:
        loss = -(targets * torch.log(probs.clamp(min=_EPS))).sum(dim=1)
        chosen = torch.zeros(n, dtype=torch.bool, device=probs.device)
        pools = (
            [in_set & (predicted == c) for c in range(probs.shape[1])]
            if classwise_selection
            else [in_set]
        )
        for pool in pools:
            members = torch.nonzero(pool).squeeze(1)
            k = int(round(delta * len(members)))
            if k == 0:
                continue
            # Stable order: ties broken by index, so selection is deterministic.
            order = torch.argsort(loss[members], stable=True)
            chosen[members[order[:k]]] = True
        groups[chosen] = SMALL_LOSS
    return groups, predicted


def refinery_targets(targets, groups, predicted, *, gamma=0.85, sharpen_selected=True):
    """The target of each sample in Eq. 5, and whether it has one.

    Parameters
    ----------
    targets : torch.Tensor of shape (n, C)
        The re-normalised targets q.
    groups : torch.LongTensor of shape (n,)
        From :func:`refinery_groups`.
    predicted : torch.LongTensor of shape (n,)
        From :func:`refinery_groups`.
    gamma : float, default=0.85
        Sharpening of the small-loss samples' targets.
    sharpen_selected : bool, default=True
        If False, small-loss samples keep q.

    Returns
    -------
    qhat : torch.Tensor of shape (n, C)
    has_target : torch.BoolTensor of shape (n,)
        False for D_out - D_hc.

    Examples
    --------
    >>> q = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    >>> qhat, has = refinery_targets(q, torch.tensor([1, 2]), torch.tensor([1, 0]),
    ...                              gamma=0.5)
    >>> qhat, has
    (tensor([[0.1000, 0.9000],
            [1.0000, 0.0000]]), tensor([True, True]))
    """
    qhat = targets.clone()
    selected = groups == SMALL_LOSS
    if sharpen_selected and selected.any():
        qhat[selected] = sharpen(targets[selected], gamma)
    confident = groups == CONFIDENT_OUT
    if confident.any():
        qhat[confident] = F.one_hot(predicted[confident], targets.shape[1]).to(
            targets.dtype
        )
    has_target = groups != OUT
    qhat[~has_target] = 0.0
    return qhat, has_target


def consistency_loss(logits_aug, logits, qhat, has_target):
    """The consistency terms: CE(p_aug, qhat) where a target exists, else KL.

    Parameters
    ----------
    logits_aug : torch.Tensor of shape (n, C)
        The augmented view.
    logits : torch.Tensor of shape (n, C)
        The plain view (detached inside).
    qhat : torch.Tensor of shape (n, C)
    has_target : torch.BoolTensor of shape (n,)

    Returns
    -------
    torch.Tensor of shape (n,)
        ``CE(p_aug, qhat)`` on samples with a target, ``KL(p || p_aug)`` on the
        others.

    Examples
    --------
    >>> z = torch.zeros(2, 2)
    >>> consistency_loss(z, z, torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
    ...                  torch.tensor([True, False]))
    tensor([0.6931, 0.0000])
    """
    log_aug = F.log_softmax(logits_aug, dim=1)
    ce = -(qhat * log_aug).sum(dim=1)
    plain = F.softmax(logits.detach(), dim=1)
    kl = (plain * (torch.log(plain.clamp(min=_EPS)) - log_aug)).sum(dim=1)
    return torch.where(has_target, ce, kl)


def consistency_term(logits_aug, logits, qhat, groups, *, separate_means=False):
    """App. A.2's consistency terms for a batch: ``L_cr_in + L_cr_out``.

    ``CE(p_aug, qhat)`` on the in-candidate samples (groups :data:`IN` and
    :data:`SMALL_LOSS`), ``KL(p || p_aug)`` on the out-of-candidate ones
    (:data:`CONFIDENT_OUT` and :data:`OUT`), as in the paper.

    Parameters
    ----------
    logits_aug : torch.Tensor of shape (n, C)
        The augmented view.
    logits : torch.Tensor of shape (n, C)
        The plain view (detached inside).
    qhat : torch.Tensor of shape (n, C)
        The targets of :func:`refinery_targets`.
    groups : torch.LongTensor of shape (n,)
        The codes of :func:`refinery_groups`.
    separate_means : bool, default=False
        True takes the paper's two means, one over each part (a part the batch
        does not hold adds 0). False takes one mean over the batch, so each part
        weighs by its share of the batch (the student's default,
        ``consistency_means="batch"``).

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> z = torch.zeros(3, 2)
    >>> qhat = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    >>> groups = torch.tensor([IN, SMALL_LOSS, OUT])
    >>> consistency_term(z, z, qhat, groups)
    tensor(0.4621)
    >>> consistency_term(z, z, qhat, groups, separate_means=True)
    tensor(0.6931)
    """
    inside = groups <= SMALL_LOSS
    per_sample = consistency_loss(logits_aug, logits, qhat, inside)
    if not separate_means:
        return per_sample.mean()
    total = per_sample.new_zeros(())
    for rows in (inside, ~inside):
        if rows.any():
            total = total + per_sample[rows].mean()
    return total


def mixup(inputs, targets, omega, permutation):
    """Mix inputs and targets with their permuted partners (weight ``omega``).

    Parameters
    ----------
    inputs : torch.Tensor of shape (n, ...)
    targets : torch.Tensor of shape (n, C)
    omega : float
        The weight of the sample itself; the paper draws ``Beta(4, 4)`` and
        keeps ``max(omega, 1 - omega)``.
    permutation : torch.LongTensor of shape (n,)

    Returns
    -------
    mixed_inputs, mixed_targets : torch.Tensor

    Examples
    --------
    >>> x, t = mixup(torch.tensor([[0.0], [1.0]]), torch.eye(2), 0.75,
    ...              torch.tensor([1, 0]))
    >>> x.squeeze(1).tolist(), t.tolist()
    ([0.25, 0.75], [[0.75, 0.25], [0.25, 0.75]])
    """
    mixed_inputs = omega * inputs + (1.0 - omega) * inputs[permutation]
    mixed_targets = omega * targets + (1.0 - omega) * targets[permutation]
    return mixed_inputs, mixed_targets


def cc_loss(logits, candidates):
    """CC: ``-log sum_{j in s} p_j`` per sample.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
    candidates : torch.Tensor of shape (n, C)

    Returns
    -------
    torch.Tensor of shape (n,)

    Examples
    --------
    >>> cc_loss(torch.zeros(1, 4), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    tensor([0.6931])
    """
    log_p = F.log_softmax(logits, dim=1)
    masked = log_p.masked_fill(candidates <= 0, float("-inf"))
    return -torch.logsumexp(masked, dim=1)


def lws_weights(probs, candidates):
    """LWS weights: the prediction normalised inside and outside ``s`` apart.

    Parameters
    ----------
    probs : torch.Tensor of shape (n, C)
    candidates : torch.Tensor of shape (n, C)

    Returns
    -------
    torch.Tensor of shape (n, C)
        Rows sum to one over ``s`` and to one over its complement (where it is
        not empty).

    Examples
    --------
    >>> lws_weights(torch.tensor([[0.5, 0.3, 0.1, 0.1]]),
    ...             torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    tensor([[0.6250, 0.3750, 0.5000, 0.5000]])
    """
    inside = renormalize(probs, candidates)
    outside = renormalize(probs, 1.0 - candidates)
    empty_out = (1.0 - candidates).sum(dim=1, keepdim=True) == 0
    outside = torch.where(empty_out, torch.zeros_like(outside), outside)
    return inside + outside


def lws_loss(logits, candidates, weights, beta=1.0):
    """LWS: ``sum_{j in s} w_j sig(-z_j) + beta sum_{j not in s} w_j sig(z_j)``.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
    candidates : torch.Tensor of shape (n, C)
    weights : torch.Tensor of shape (n, C)
        From :func:`lws_weights` (detached).
    beta : float, default=1.0
        Weight of the non-candidate term.

    Returns
    -------
    torch.Tensor of shape (n,)

    Examples
    --------
    >>> lws_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2))
    tensor([1.])
    """
    inside = (candidates * weights * torch.sigmoid(-logits)).sum(dim=1)
    outside = ((1.0 - candidates) * weights * torch.sigmoid(logits)).sum(dim=1)
    return inside + beta * outside


def cavl_targets(logits, candidates):
    """CAVL: the candidate with the largest class activation ``z |1 - z|``.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
    candidates : torch.Tensor of shape (n, C)

    Returns
    -------
    torch.LongTensor of shape (n,)
        The pseudo-label (an index inside each candidate set).

    Examples
    --------
    >>> cavl_targets(torch.tensor([[3.0, 0.5, 4.0]]), torch.tensor([[0.0, 1.0, 1.0]]))
    tensor([2])
    """
    value = logits * (1.0 - logits).abs()
    value = value.masked_fill(candidates <= 0, float("-inf"))
    return value.argmax(dim=1)

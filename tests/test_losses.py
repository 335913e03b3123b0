"""The functional core: partial-label losses and the refinery's steps."""

import pytest

torch = pytest.importorskip("torch")

from skcandist import losses as L  # noqa: E402


def _cands(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_uniform_targets_spread_mass_over_the_candidate_set():
    q = L.uniform_targets(_cands([[1, 0, 1], [0, 1, 0]]))
    assert torch.allclose(q, torch.tensor([[0.5, 0, 0.5], [0, 1, 0]]))


def test_renormalize_is_eq1_and_falls_back_to_uniform():
    probs = torch.tensor([[0.1, 0.3, 0.6], [1.0, 0.0, 0.0]])
    cands = _cands([[1, 1, 0], [0, 1, 1]])
    q = L.renormalize(probs, cands)
    assert torch.allclose(q[0], torch.tensor([0.25, 0.75, 0.0]))
    assert torch.allclose(q[1], torch.tensor([0.0, 0.5, 0.5]))
    assert torch.allclose(q.sum(dim=1), torch.ones(2))


def test_sharpen_keeps_argmax_and_sharpens():
    q = torch.tensor([[0.3, 0.7, 0.0]])
    s = L.sharpen(q, 0.85)
    assert s.argmax() == 1 and s[0, 1] > 0.7 and s[0, 2] == 0
    assert torch.allclose(L.sharpen(q, 1.0), q)


def test_soft_cross_entropy_matches_hard_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 3, 1, 2, 2])
    soft = L.soft_cross_entropy(logits, torch.nn.functional.one_hot(target, 4).float())
    hard = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(soft, hard, atol=1e-6)


def test_refinery_groups_out_of_candidate_filter_and_confidence():
    probs = torch.tensor([[0.2, 0.8], [0.999, 0.001], [0.6, 0.4]])
    cands = _cands([[1, 1], [0, 1], [0, 1]])
    q = L.renormalize(probs, cands)
    groups, pred = L.refinery_groups(probs, q, cands, delta=0.0, tau=0.99)
    assert groups.tolist() == [L.IN, L.CONFIDENT_OUT, L.OUT]
    assert pred.tolist() == [1, 0, 0]
    groups, _ = L.refinery_groups(probs, q, cands, delta=0.0, confident_targets=False)
    assert groups.tolist() == [L.IN, L.OUT, L.OUT]
    groups, _ = L.refinery_groups(
        probs, q, cands, delta=0.0, filter_out_of_candidate=False
    )
    assert groups.tolist() == [L.IN, L.IN, L.IN]


def test_small_loss_selection_is_classwise():
    # Class 0 holds 4 samples with increasing loss, class 1 holds 2.
    probs = torch.tensor(
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.1, 0.9], [0.4, 0.6]]
    )
    cands = torch.ones(6, 2)
    q = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 2)
    groups, _ = L.refinery_groups(probs, q, cands, delta=0.5)
    assert groups.tolist() == [1, 1, 0, 0, 1, 0]
    # Over all of D_in at once, the 3 smallest losses are all in class 0.
    probs[4] = torch.tensor([0.35, 0.65])  # class 1's best loss now > sample 2's
    groups, _ = L.refinery_groups(probs, q, cands, delta=0.5, classwise_selection=False)
    assert groups.tolist() == [1, 1, 1, 0, 0, 0]
    groups, _ = L.refinery_groups(probs, q, cands, delta=0.5)
    assert groups.tolist() == [1, 1, 0, 0, 1, 0]
    groups, _ = L.refinery_groups(
        probs, q, cands, delta=0.5, small_loss_selection=False
    )
    assert groups.tolist() == [0] * 6


def test_classwise_selection_protects_hard_classes():
    # Class 1's losses are all larger than class 0's: only class-wise selection
    # keeps some of class 1.
    probs = torch.tensor([[0.95, 0.05]] * 4 + [[0.45, 0.55]] * 4)
    cands = torch.ones(8, 2)
    q = L.renormalize(probs, cands)
    classwise, _ = L.refinery_groups(probs, q, cands, delta=0.5)
    overall, _ = L.refinery_groups(
        probs, q, cands, delta=0.5, classwise_selection=False
    )
    assert (classwise[4:] == L.SMALL_LOSS).sum() == 2
    assert (overall[4:] == L.SMALL_LOSS).sum() == 0


def test_refinery_targets_per_group():
    q = torch.tensor([[0.4, 0.6], [0.4, 0.6], [0.4, 0.6], [0.4, 0.6]])
    groups = torch.tensor([L.IN, L.SMALL_LOSS, L.CONFIDENT_OUT, L.OUT])
    pred = torch.tensor([1, 1, 0, 0])
    qhat, has = L.refinery_targets(q, groups, pred, gamma=0.5)
    assert torch.allclose(qhat[0], q[0])
    assert qhat[1, 1] > 0.6
    assert qhat[2].tolist() == [1.0, 0.0]
    assert qhat[3].tolist() == [0.0, 0.0]
    assert has.tolist() == [True, True, True, False]
    qhat, _ = L.refinery_targets(q, groups, pred, gamma=0.5, sharpen_selected=False)
    assert torch.allclose(qhat[1], q[1])


def test_consistency_loss_is_kl_without_a_target_and_ce_with_one():
    logits = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.2, -2.0]])
    logits_aug = torch.tensor([[0.0, 2.0, -1.0], [0.5, 0.2, -2.0]], requires_grad=True)
    qhat = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    no_target = torch.tensor([False, False])
    out = L.consistency_loss(logits_aug, logits, qhat, no_target)
    # KL(p || p_aug), the plain view p as the reference (not KL(p_aug || p)).
    p, p_aug = torch.softmax(logits, 1), torch.softmax(logits_aug.detach(), 1)
    kl = (p * (p.log() - p_aug.log())).sum(dim=1)
    assert kl[0] > 0.5 and abs(kl[0] - (p_aug * (p_aug.log() - p.log())).sum()) > 0.1
    assert torch.allclose(out, kl, atol=1e-6)
    assert out[1].abs() < 1e-6  # identical views
    # With a target: CE(p_aug, qhat).
    with_target = torch.tensor([True, False])
    out = L.consistency_loss(logits_aug, logits, qhat, with_target)
    assert torch.allclose(out[0], -torch.log_softmax(logits_aug.detach(), 1)[0, 1])
    assert torch.allclose(out[1], kl[1], atol=1e-6)
    # The plain view is the target: no gradient flows into it.
    plain = logits.clone().requires_grad_(True)
    L.consistency_loss(logits_aug, plain, qhat, no_target).sum().backward()
    assert plain.grad is None and logits_aug.grad.abs().sum() > 0


def test_consistency_term_splits_d_in_and_d_out_as_the_paper():
    """App. A.2: CE on the in-candidate rows, KL on the out-of-candidate rows
    (D_hc among them); one mean over the batch, or the paper's two means."""
    torch.manual_seed(0)
    logits, logits_aug = torch.randn(5, 3), torch.randn(5, 3)
    qhat = torch.softmax(torch.randn(5, 3), dim=1)
    groups = torch.tensor([L.IN, L.SMALL_LOSS, L.CONFIDENT_OUT, L.OUT, L.OUT])
    inside = torch.tensor([True, True, False, False, False])
    ce = L.consistency_loss(logits_aug, logits, qhat, torch.ones(5, dtype=bool))
    kl = L.consistency_loss(logits_aug, logits, qhat, torch.zeros(5, dtype=bool))
    per_sample = torch.where(inside, ce, kl)  # D_hc (row 2) takes the KL
    assert not torch.allclose(per_sample[2], ce[2], atol=1e-3)

    def term(groups, **kwargs):
        return L.consistency_term(logits_aug, logits, qhat, groups, **kwargs)

    separate = term(groups, separate_means=True)
    assert torch.allclose(separate, ce[inside].mean() + kl[~inside].mean(), atol=1e-6)
    assert torch.allclose(term(groups), per_sample.mean(), atol=1e-6)
    assert not torch.allclose(separate, per_sample.mean(), atol=1e-3)
    # A batch with one part only: that part's mean, no empty-mean NaN.
    for kwargs in ({}, {"separate_means": True}):
        all_in = term(torch.zeros(5).long(), **kwargs)
        assert torch.allclose(all_in, ce.mean(), atol=1e-6)
        all_out = term(torch.full((5,), L.OUT), **kwargs)
        assert torch.allclose(all_out, kl.mean(), atol=1e-6)


def test_mixup_convex_combination():
    x = torch.tensor([[0.0, 2.0], [4.0, 6.0]])
    t = torch.eye(2)
    mx, mt = L.mixup(x, t, 0.75, torch.tensor([1, 0]))
    # 0.75 of the sample itself, 0.25 of its partner, for inputs and targets.
    assert torch.allclose(mx, torch.tensor([[1.0, 3.0], [3.0, 5.0]]))
    assert torch.allclose(mt, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    # The identity permutation mixes nothing.
    mx, mt = L.mixup(x, t, 0.6, torch.tensor([0, 1]))
    assert torch.allclose(mx, x) and torch.allclose(mt, t)


def test_cc_loss_only_counts_candidate_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    assert torch.allclose(
        L.cc_loss(logits, _cands([[1, 1, 0]])), -torch.log(torch.tensor([0.8]))
    )
    assert torch.allclose(
        L.cc_loss(logits, _cands([[1, 1, 1]])), torch.zeros(1), atol=1e-6
    )


def test_cc_loss_gradient_is_finite_with_extreme_logits():
    logits = torch.tensor([[100.0, -100.0, 0.0]], requires_grad=True)
    L.cc_loss(logits, _cands([[0, 1, 0]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_lws_weights_and_loss():
    probs = torch.tensor([[0.6, 0.2, 0.1, 0.1]])
    cands = _cands([[1, 1, 0, 0]])
    w = L.lws_weights(probs, cands)
    assert torch.allclose((w * cands).sum(), torch.tensor(1.0))
    assert torch.allclose((w * (1 - cands)).sum(), torch.tensor(1.0))
    # All-candidate rows: no outside weight.
    w_all = L.lws_weights(probs, torch.ones(1, 4))
    assert torch.allclose(w_all.sum(), torch.tensor(1.0))
    good = L.lws_loss(torch.tensor([[5.0, 5.0, -5.0, -5.0]]), cands, w)
    bad = L.lws_loss(torch.tensor([[-5.0, -5.0, 5.0, 5.0]]), cands, w)
    assert good < bad


def test_cavl_targets_are_the_largest_activation_in_the_set():
    # z |1 - z|: 0.5 -> 0.25, 1.0 -> 0, 3.0 -> 6, -3.0 -> -12. Not the largest
    # logit: a logit of 1 has no activation.
    logits = torch.tensor([[0.5, 1.0, -3.0], [0.5, 1.0, 3.0], [0.5, 1.0, 3.0]])
    cands = _cands([[1, 1, 1], [1, 1, 1], [0, 1, 0]])
    assert L.cavl_targets(logits, cands).tolist() == [0, 2, 1]
    # Against a plain reference on random logits and sets.
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(1)) * 2
    cands = (
        torch.rand(20, 5, generator=torch.Generator().manual_seed(2)) > 0.5
    ).float()
    cands[:, 0] = 1
    target = L.cavl_targets(logits, cands)
    for row in range(20):
        members = [j for j in range(5) if cands[row, j]]
        value = {j: float(logits[row, j] * abs(1 - logits[row, j])) for j in members}
        assert int(target[row]) == max(value, key=value.get)

"""CanDistClassifier: the student, a skorch net around the distribution refinery.

The estimator is a thin scikit-learn shell. ``fit`` validates the texts and the
candidate sets, turns the texts into encoder inputs (cached frozen embeddings, or
token ids when the encoder is fine-tuned) and trains a private skorch
:class:`~skorch.NeuralNet` subclass, :class:`_RefineryNet`, which overrides
skorch's narrow hooks only:

- ``on_epoch_begin``: once per epoch, the refinery's selection (Eqs. 2-4 via
  :func:`skcandist.losses.refinery_groups`) and every sample's target of Eq. 5;
- ``train_step_single``: the loss of the chosen ``loss`` on a batch, with the
  second (augmented or dropout) view and mixup of encoder embeddings (one pass
  of the head for all three on frozen embeddings);
- ``on_epoch_end``: the re-normalised targets (Eq. 1) of the samples the epoch
  trained on, from their latest predictions;
- ``get_iterator``: mini-batches sliced from whole tensors.

The losses themselves are pure functions in :mod:`skcandist.losses`.
"""

import io
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.dataset import unpack_data
from torch import nn

from . import losses as L
from ._annotated import AnnotatedTexts
from ._validation import check_texts
from .encoders import encode, load_encoder, mean_pool, resolve_encoder
from .exceptions import InvalidInputError, SkcandistWarning
from .teacher_model import fit_teacher_model

__all__ = ["CanDistClassifier"]

_LOSSES = ("candist", "proden", "cc", "lws", "cavl", "ce")
_TEACHER_MODELS = ("em", None)
# Out-of-fold splits of the teacher model; with fewer than twice as many texts,
# there is none (the refinery then starts from the candidate sets, as the paper).
_TEACHER_FOLDS = 5
# A class with at least this posterior under the teacher model passes the
# out-of-candidate filter as if it were in the set.
_PLAUSIBLE = 0.1
# The least number of optimisation steps of a warm-up shortened for a short run
# (see warmup_epochs): about the paper's warm-up (3 epochs of TREC's 5,452
# training texts at batch 32 are 513 steps) and the default run's (10 epochs of
# 2,000 texts, 630 steps).
_MIN_WARMUP_STEPS = 500
_CONSISTENCY_MEANS = ("batch", "separate")


def _softmax(logits):
    return torch.softmax(logits, dim=-1)


def _cuda_devices():
    """The CUDA devices whose generators ``torch.manual_seed`` reseeds."""
    if torch.cuda.is_available():
        return list(range(torch.cuda.device_count()))
    return []


def _device_type(device):
    """The kind of ``device`` ("cpu", "cuda", ...); None, skorch's "do not
    move", is the CPU, where the module is built."""
    return "cpu" if device is None else torch.device(device).type


def _autocast_dtype(device, enabled=True):
    """The dtype of a training step's mixed precision on ``device``, or None.

    bfloat16 on a CUDA GPU that has it, float16 (with a gradient scaler) on
    one that does not; None, full precision, on any other device or where
    ``enabled`` is False.
    """
    if not enabled or _device_type(device) != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _available_device(device):
    """``device``, or "cpu" (with a warning) where it does not exist here."""
    name = str(device)
    missing = (name.startswith("cuda") and not torch.cuda.is_available()) or (
        name.startswith("mps")
        and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        )
    )
    if missing:
        warnings.warn(
            f"this student was trained on device={name!r}, which this machine does "
            "not have; it was loaded on the CPU (set_params(device=...) to change).",
            SkcandistWarning,
            stacklevel=3,
        )
        return "cpu"
    return device


class _Head(nn.Module):
    """Classifier head on frozen sentence embeddings (the inputs are embeddings)."""

    def __init__(self, dim, n_classes, hidden=256, dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        if hidden:
            self.body = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout)
            )
            out_dim = hidden
        else:
            self.body = nn.Identity()
            out_dim = dim
        self.out = nn.Linear(out_dim, n_classes)

    def embed(self, x=None, x_aug=None, augmented=False, **_):
        return x_aug if augmented else x

    def classify(self, embeddings):
        if self.training and embeddings.device.type == "cpu":
            return self._classify_cpu_training(embeddings)
        return self.out(self.body(self.dropout(embeddings)))

    def _classify_cpu_training(self, embeddings):
        """``classify`` in training on the CPU: both dropout masks in one draw.

        The CPU's dropout (``bernoulli_``) costs more than the head's layers on
        a training batch. Here one ``torch.rand`` draw of the global generator
        gives the masks of both dropout layers: a unit is kept where its uniform
        is at least ``p``, with probability ``1 - p`` (to float resolution), as
        in ``nn.Dropout``, and the kept units are scaled by ``1 / (1 - p)``.
        Only the random stream differs from ``nn.Dropout``'s.
        """
        hidden = isinstance(self.body, nn.Sequential)
        layers = [(self.dropout.p, embeddings.shape[1])]
        if hidden:
            layers.append((self.body[2].p, self.body[0].out_features))
        if not all(0 <= p < 1 for p, _ in layers):
            return self.out(self.body(self.dropout(embeddings)))
        width = sum(size for p, size in layers if p > 0)
        noise = torch.rand(len(embeddings), width) if width else None
        start = 0

        def drop(values, p):
            nonlocal start
            if p == 0:
                return values
            stop = start + values.shape[1]
            kept = (noise[:, start:stop] >= p) * (1.0 / (1.0 - p))
            start = stop
            return values * kept

        values = drop(embeddings, layers[0][0])
        if hidden:
            values = drop(self.body[1](self.body[0](values)), layers[1][0])
        return self.out(values)

    def forward(self, x=None, **kwargs):
        return self.classify(self.embed(x=x, **kwargs))


class _FineTuned(nn.Module):
    """A transformer encoder, mean-pooled, with a linear head; all trainable."""

    def __init__(self, encoder, n_classes, dropout=0.1, pretrained=True):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = resolve_encoder(encoder)
        if pretrained:
            self.encoder = load_encoder(path)[1]
        else:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(path))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(self.encoder.config.hidden_size, n_classes)

    def embed(self, input_ids=None, attention_mask=None, augmented=False, **kwargs):
        if augmented:
            input_ids = kwargs["input_ids_aug"]
            attention_mask = kwargs["attention_mask_aug"]
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        return mean_pool(states, attention_mask)

    def classify(self, embeddings):
        return self.out(self.dropout(embeddings))

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return self.classify(self.embed(input_ids, attention_mask))


# Token-id inputs and their attention masks: each batch is cut to its longest
# member (see _TensorBatches).
_TOKEN_INPUTS = {"input_ids": "attention_mask", "input_ids_aug": "attention_mask_aug"}


def _trim_padding(Xb):
    """Drop the padding columns that every text of the batch has at the end.

    The texts are tokenized once, padded (on the right) to the longest text of
    the whole data; a batch needs only its own longest member's length. The
    columns cut hold padding in every row, masked out of attention and of the
    mean pooling, so the result is the same, up to float rounding; a tokenizer
    that pads on the left keeps its full width.
    """
    for ids, mask in _TOKEN_INPUTS.items():
        if ids in Xb and mask in Xb:
            used = torch.nonzero(Xb[mask].any(dim=0))
            width = int(used[-1]) + 1 if len(used) else 1
            if width < Xb[mask].shape[1]:
                Xb[ids] = Xb[ids][:, :width]
                Xb[mask] = Xb[mask][:, :width]
    return Xb


class _TensorBatches:
    """Mini-batches sliced from whole tensors (skorch's iterator, without collation).

    skorch's default ``DataLoader`` builds every batch sample by sample and
    collates it; on cached embeddings that costs more than the training step.
    This iterable holds the inputs as tensors once and yields index slices of
    them, in a fresh random order per pass when ``shuffle`` is set. Token ids
    (fine-tuning) are cut to the longest text of each batch.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        from torch.utils.data import Subset

        rows = None
        if isinstance(dataset, Subset):
            rows = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
            dataset = dataset.dataset
        X, y = dataset.X, dataset.y
        self.X = {k: torch.as_tensor(np.asarray(v)) for k, v in X.items()}
        self.y = None if y is None else torch.as_tensor(np.asarray(y))
        if rows is not None:
            self.X = {k: v[rows] for k, v in self.X.items()}
            self.y = None if self.y is None else self.y[rows]
        self.n = len(next(iter(self.X.values())))
        self.batch_size = self.n if batch_size == -1 else int(batch_size)
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return -(-self.n // self.batch_size)

    def __iter__(self):
        X, y = self.X, self.y
        if self.shuffle:
            # One gather of the whole data per pass; the batches are then
            # slices of it (views), not a gather each.
            order = torch.randperm(self.n, generator=self.generator)
            X = {k: v[order] for k, v in X.items()}
            y = None if y is None else y[order]
        trim = any(k in X for k in _TOKEN_INPUTS)
        for start in range(0, self.n, self.batch_size):
            rows = slice(start, min(start + self.batch_size, self.n))
            Xb = {k: v[rows] for k, v in X.items()}
            yield (_trim_padding(Xb) if trim else Xb), (None if y is None else y[rows])


class _RefineryNet(NeuralNet):
    """skorch net whose training step is the chosen partial-label loss.

    Per-sample state (set by :meth:`CanDistClassifier.fit` before training):
    ``candidates_t`` (n, C), ``weights_t`` (n, C: the re-normalisation weights,
    the candidate mask or the teacher model's posterior), ``filter_t`` (the
    classes that pass the out-of-candidate filter), ``single_t`` (n,),
    ``targets_t`` (the re-normalised targets q, Eq. 1), ``probs_t`` (the latest
    prediction of each sample),
    ``groups_t`` / ``predicted_t`` (the refinery's epoch-wise selection),
    ``visited_t`` (samples trained on so far), ``rng`` (mixup draws) and
    ``refinery`` (a dict of the estimator's loss settings). Set each epoch (and
    dropped at the end of training): ``qhat_t`` / ``has_t`` (the targets of
    Eq. 5 and whether a sample has one) and ``fresh_t`` (the samples trained on
    in this epoch, whose targets q are re-normalised at its end).

    A training step runs the head once over all of its views (the plain
    one, the consistency term's and the mixed rows; see ``train_step_single``).
    """

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        cfg = self.refinery
        epoch = len(self.history)
        n = self.targets_t.shape[0]
        groups = torch.full((n,), L.IN, dtype=torch.long)
        predicted = self.probs_t.argmax(dim=1)
        if cfg["loss"] == "candist" and self._warmed_up(epoch):
            # Only samples the student has trained on (not a validation split).
            seen = torch.nonzero(self.visited_t).squeeze(1)
            groups[seen], predicted[seen] = L.refinery_groups(
                self.probs_t[seen],
                self.targets_t[seen],
                self.filter_t[seen],
                delta=cfg["delta"],
                tau=cfg["tau"],
                filter_out_of_candidate=cfg["filter_out_of_candidate"],
                classwise_selection=cfg["classwise_selection"],
                small_loss_selection=cfg["small_loss_selection"],
                confident_targets=cfg["confident_targets"],
            )
        self.groups_t, self.predicted_t = groups, predicted
        if cfg["loss"] == "candist":
            # Each training row comes once per epoch (_TensorBatches passes a
            # permutation), and its target q changes only at its own step (the
            # re-normalisation, deferred to on_epoch_end): a row's targets of
            # Eq. 5 are the same at its step as now, taken here for all rows.
            self.qhat_t, self.has_t = L.refinery_targets(
                self.targets_t,
                groups,
                predicted,
                gamma=cfg["gamma"],
                sharpen_selected=cfg["sharpen"],
            )
        # The rows trained on in this epoch, re-normalised at its end.
        self.fresh_t = torch.zeros(n, dtype=torch.bool)
        self.history.record("n_selected", int((groups == L.SMALL_LOSS).sum()))
        self.history.record("n_confident_out", int((groups == L.CONFIDENT_OUT).sum()))
        self.history.record("n_ignored", int((groups == L.OUT).sum()))

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # Eq. 1 for the rows of this epoch's steps, from their latest
        # predictions: row by row what each step would have written.
        if self.refinery["renormalize"]:
            fresh = torch.nonzero(self.fresh_t).squeeze(1)
            self.targets_t[fresh] = L.renormalize(
                self.probs_t[fresh], self.weights_t[fresh]
            )
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        super().on_batch_end(net, batch=batch, training=training, **kwargs)
        decay = self.refinery["ema_decay"]
        if training and decay > 0:
            # The exponential moving average of the weights, after each step.
            # Its decay starts lower, (1 + t) / (10 + t) after t earlier steps
            # (n_steps counts this one), so that a short run does not keep the
            # untrained weights in its average.
            params = [p.detach() for p in self.module_.parameters()]
            average = self.__dict__.get("ema_t")
            if average is None:
                self.ema_t = [p.clone() for p in params]
            else:
                t = self.n_steps - 1
                decay = min(decay, (1 + t) / (10 + t))
                torch._foreach_lerp_(average, params, 1.0 - decay)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # The student keeps the averaged weights (see ``ema_decay``; there are
        # none under validation early stopping, which restores its best epoch
        # in its own on_train_end, run after this one). An interrupted fit
        # (Ctrl-C, which skorch catches) passes here too.
        average = self.__dict__.pop("ema_t", None)
        if average is not None:
            with torch.no_grad():
                for param, value in zip(self.module_.parameters(), average):
                    param.copy_(value)
        for name in ("qhat_t", "has_t", "fresh_t"):
            self.__dict__.pop(name, None)
        super().on_train_end(net, X, y, **kwargs)

    _FUSED_ADAMW = {}  # device type -> whether AdamW(fused=True) runs there

    @classmethod
    def fused_adamw(cls, device):
        """Whether AdamW's fused kernel runs on ``device``.

        It does on CUDA, and on the CPU from torch 2.4 on, where it is faster
        than the default (single-tensor) loop on a head's small tensors; the
        update is AdamW's, up to float rounding. Probed once per device type
        on a one-element parameter; ``device=None`` (skorch's "do not move")
        is the CPU, where the module is built.
        """
        kind = _device_type(device)
        if kind not in cls._FUSED_ADAMW:
            try:
                param = torch.zeros(1, device=device or "cpu", requires_grad=True)
                torch.optim.AdamW([param], fused=True)
                ok = True
            except (RuntimeError, ValueError, TypeError, AssertionError):
                ok = False
            cls._FUSED_ADAMW[kind] = ok
        return cls._FUSED_ADAMW[kind]

    def _warmed_up(self, epoch):
        """Whether selection runs in ``epoch`` (1-based): see ``warmup_epochs``."""
        cfg = self.refinery
        done = epoch - 1  # epochs trained so far
        if done < min(cfg["warmup_epochs"], cfg["max_epochs"] // 3):
            return False
        # A warm-up cut to a third of a short run still holds _MIN_WARMUP_STEPS
        # optimisation steps, unless warmup_epochs epochs have passed.
        return done >= cfg["warmup_epochs"] or self.n_steps >= _MIN_WARMUP_STEPS

    def get_iterator(self, dataset, training=False):
        X = getattr(getattr(dataset, "dataset", dataset), "X", None)
        if not isinstance(X, dict):
            return super().get_iterator(dataset, training=training)
        params = self.get_params_for("iterator_train" if training else "iterator_valid")
        return _TensorBatches(
            dataset,
            params.get("batch_size", self.batch_size),
            shuffle=bool(params.get("shuffle", False)),
            generator=params.get("generator"),
        )

    def get_loss(self, y_pred, y_true, X=None, training=False):
        # Used on a validation split: the CC loss (mass on the candidate set).
        cands = y_true.to(y_pred.device).float()
        return L.cc_loss(y_pred, cands).mean()

    def train_step(self, batch, **fit_params):
        # float16 steps go through a gradient scaler, which steps the optimizer
        # itself (it takes no closure); otherwise skorch's own step.
        scaler = getattr(self, "grad_scaler", None)
        if scaler is None:
            return super().train_step(batch, **fit_params)
        from skorch.utils import TeeGenerator

        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        for name in self._optimizers:
            scaler.step(getattr(self, name + "_"))
        scaler.update()
        return step

    def _autocast(self):
        """The step's mixed-precision context (see ``mixed_precision``)."""
        dtype = self.refinery.get("amp_dtype")
        return torch.autocast(
            _device_type(self.device), dtype=dtype, enabled=dtype is not None
        )

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        # The per-sample buffers stay on the CPU; they are indexed by the
        # batch's rows before the inputs move to the device (no copy on a CPU).
        index = Xi["index"].cpu()
        on_cpu = _device_type(self.device) == "cpu"
        if not on_cpu:
            Xi = {k: v.to(self.device) for k, v in Xi.items()}
            yi = yi.to(self.device)

        def rows(buffer):
            return buffer[index] if on_cpu else buffer[index].to(self.device)

        cfg = self.refinery
        cands = yi.float()
        with self._autocast():
            embeddings = self.module_.embed(**Xi)
            kind = cfg["loss"]
            extra = None
            if kind in ("candist", "proden"):
                views = None
                if kind == "candist":
                    groups = rows(self.groups_t)
                    qhat, has = rows(self.qhat_t), rows(self.has_t)
                    views = self._extra_views(Xi, embeddings, qhat, has)
                else:
                    qhat = rows(self.targets_t)
                    has = torch.ones(len(index), dtype=torch.bool, device=qhat.device)
                if views is None:
                    logits = self.module_.classify(embeddings)
                else:
                    # One pass of the head for every view: the plain one, the
                    # consistency term's and the mixed one, split afterwards. The
                    # head treats each row on its own (dropout draws per row), so
                    # this is the separate passes' computation in one batch.
                    inputs = [embeddings, *views["inputs"]]
                    sizes = [len(part) for part in inputs]
                    every = self.module_.classify(torch.cat(inputs))
                    logits, *view_logits = every.split(sizes)
                loss = (L.soft_cross_entropy(logits, qhat) * has).mean()
                if views is not None:
                    extra = self._extras(views, view_logits, logits, qhat, groups)
            else:
                logits = self.module_.classify(embeddings)
                if kind == "cc":
                    loss = L.cc_loss(logits, cands).mean()
                elif kind == "lws":
                    weights = L.lws_weights(rows(self.probs_t), cands)
                    loss = L.lws_loss(logits, cands, weights, cfg["lws_beta"]).mean()
                elif kind == "cavl":
                    # As in CAVL's original, a sample's first visit trains on the
                    # uniform target over its set; later visits on the largest class
                    # activation value inside it.
                    target = nn.functional.one_hot(
                        L.cavl_targets(logits.detach(), cands), cands.shape[1]
                    ).to(logits.dtype)
                    first = ~rows(self.visited_t)
                    target[first] = L.uniform_targets(cands[first])
                    loss = L.soft_cross_entropy(logits, target).mean()
                else:  # "ce"
                    loss = nn.functional.cross_entropy(logits, rows(self.single_t))
            if extra is not None:
                loss = loss + extra
        scaler = getattr(self, "grad_scaler", None)
        (loss if scaler is None else scaler.scale(loss)).backward()
        probs = torch.softmax(logits.detach().float(), dim=1)
        if not on_cpu:
            probs = probs.cpu()
        self.probs_t[index] = probs
        self.visited_t[index] = True
        if cfg["renormalize"]:
            self.fresh_t[index] = True  # re-normalised at the epoch's end
        self.n_steps += 1
        return {"loss": loss, "y_pred": logits}

    def _extra_views(self, Xi, embeddings, qhat, has):
        """The inputs of the consistency and mixup views, or None (no term).

        A dict: ``eta`` (the terms' weight, App. A.2), ``inputs`` (the
        embeddings of the consistency view, then the mixed ones, each present
        when its term runs) and ``mixed_q`` (the mixed targets, or None).
        """
        cfg = self.refinery
        ramp = cfg["ramp_epochs"]
        epoch = len(self.history)
        eta = 1.0 if ramp <= 0 else min(1.0, (epoch - 1) / ramp)
        if eta <= 0 or not (cfg["consistency"] or cfg["mixup"]):
            return None
        inputs = []
        if cfg["consistency"]:
            if cfg["has_augmented"]:
                inputs.append(self.module_.embed(augmented=True, **Xi))
            elif cfg["finetune"]:
                # A second pass of the encoder, with its own dropout.
                inputs.append(self.module_.embed(**Xi))
            else:
                # The same embeddings: the head's dropout makes the view.
                inputs.append(embeddings)
        mixed_q = None
        n_target = int(has.sum())
        if cfg["mixup"] and n_target > 1:
            rng = self.rng
            omega = float(rng.beta(cfg["mixup_alpha"], cfg["mixup_alpha"]))
            omega = max(omega, 1.0 - omega)
            perm = torch.as_tensor(rng.permutation(n_target), device=qhat.device)
            target_rows, target_q = embeddings, qhat
            if n_target < len(has):
                target_rows, target_q = embeddings[has], qhat[has]
            mixed, mixed_q = L.mixup(target_rows, target_q, omega, perm)
            inputs.append(mixed)
        if not inputs:
            return None
        return {
            "eta": eta,
            "inputs": inputs,
            "mixed_q": mixed_q,
        }

    def _extras(self, views, view_logits, logits, qhat, groups):
        """eta * (consistency + mixup), App. A.2 of the paper, on the logits of
        the views of :meth:`_extra_views` (in their order)."""
        cfg = self.refinery
        view_logits = list(view_logits)
        total = logits.new_zeros(())
        if cfg["consistency"]:
            total = total + L.consistency_term(
                view_logits.pop(0),
                logits,
                qhat,
                groups,
                separate_means=cfg["consistency_means"] == "separate",
            )
        if views["mixed_q"] is not None:
            mixed = view_logits.pop(0)
            total = total + L.soft_cross_entropy(mixed, views["mixed_q"]).mean()
        return views["eta"] * total


def _check_matrix(y, n_texts):
    if sp.issparse(y):
        data = np.asarray(y.data)
        shape = y.shape
    else:
        y = np.asarray(y)
        data = y.ravel()
        shape = y.shape
    if data.dtype == object or not (
        np.issubdtype(data.dtype, np.number) or data.dtype == bool
    ):
        raise InvalidInputError(
            f"the candidate matrix must be numeric 0/1, got dtype {data.dtype}."
        )
    data = data.astype(float)
    if np.isnan(data).any():
        raise InvalidInputError("the candidate matrix holds NaN values.")
    odd = np.unique(data[(data != 0) & (data != 1)])
    if odd.size:
        raise InvalidInputError(
            f"the candidate matrix must hold only 0 and 1, found {odd[:5].tolist()}."
        )
    if shape[0] != n_texts:
        raise InvalidInputError(
            f"X holds {n_texts} texts but the candidate matrix has {shape[0]} rows."
        )
    dense = y.toarray() if sp.issparse(y) else y
    return np.asarray(dense, dtype=np.float32)


class CanDistClassifier(ClassifierMixin, BaseEstimator):
    """A text classifier learnt from candidate label sets (CanDist's student).

    The student reads each text through a transformer encoder
    (all-MiniLM-L6-v2 by default) and learns from the teacher's candidate sets
    with the distribution refinery of Xia et al. (ACL 2025): re-normalised targets
    (Eq. 1), an out-of-candidate filter (Eq. 2), class-wise small-loss selection
    with sharpening (Eq. 3), confident out-of-candidate targets (Eq. 4), the loss
    of Eq. 5 after a warm-up, plus consistency and mixup terms. Training runs on
    skorch; the fitted net is ``net_`` (its ``history`` holds the per-epoch log).

    Parameters
    ----------
    loss : {"candist", "proden", "cc", "lws", "cavl", "ce"}, default="candist"
        "candist" is the full refinery. The baselines: "proden" (re-normalised
        targets alone, RC/PRODEN), "cc", "lws", "cavl", and "ce", cross-entropy
        on one label per sample: the teacher's single label where the input is
        an :class:`AnnotatedTexts` carrying ``single``, else the first candidate
        (in column order) of each set.
    delta : float, default=0.5
        Fraction of each predicted class kept by the small-loss selection.
    gamma : float, default=0.85
        Sharpening of the selected samples' targets, ``q ** (1 / gamma)``.
    tau : float, default=0.99
        Confidence above which an out-of-candidate prediction becomes a one-hot
        target.
    warmup_epochs : int, default=10
        Epochs on the re-normalised targets of all samples before selection
        starts: selection runs from epoch ``warmup_epochs + 1`` on. A run
        shorter than ``3 * warmup_epochs`` epochs shortens the warm-up to a
        third of ``max_epochs``, but not below 500 optimisation steps (batches):
        the warm-up is ``min(warmup_epochs, max(max_epochs // 3,
        ceil(500 / batches_per_epoch)))`` epochs, and a warm-up as long as the
        run means no selection at all (the re-normalised targets of PRODEN, with
        the consistency and mixup terms). So a short fine-tuning run, or one on
        few texts, does not select on the predictions of a student that has
        barely trained; the default run (50 epochs) always warms up for 10.
        500 steps is about the paper's warm-up (3 epochs of TREC's 5,452 texts at
        batch 32: 513 steps) and the default's (10 epochs of 2,000 texts: 630).
        With many classes the student needs a longer warm-up before its own
        predictions can select targets: on Banking77 (77 classes, simulated
        teacher), ``benchmarks/bench_quality.py`` measured 84.6 | 75.9 %
        (annotation | test accuracy) with 3 warm-up epochs of 30, and
        86.9 | 80.5 % with 10 of 50; TREC moved by less than a point.
    max_epochs : int, default=50
        Training epochs (the paper's 50).
    lr : float, default=None
        AdamW learning rate; None is 3e-3 for a head on frozen embeddings and
        3e-5 when fine-tuning.
    batch_size : int, default=32
    max_length : int, default=128
        Texts are truncated to this many tokens. When fine-tuning, each batch
        is padded only to its longest text.
    weight_decay : float, default=0.01
    encoder : str, default=None
        None: the offline all-MiniLM-L6-v2; else a Hugging Face name or path.
    finetune : bool, default=False
        False trains a head on frozen, cached embeddings; True fine-tunes the whole
        encoder (the paper's setting, for a GPU).
    hidden_size : int, default=256
        Width of the head's hidden layer (frozen encoder); 0 for a linear head.
    dropout : float, default=0.1
        Dropout on the embeddings (and in the head). It also makes the second
        view of the consistency term. More dropout buys the frozen head test
        accuracy with annotation accuracy where the teacher is strong and the
        features weak: with 0.3, the summed test margins of
        ``benchmarks/probe_student_heads.py`` over its 12 settings rose from
        +7.1 to +17.2 points, but on SST-2 with the teacher right on 88% of
        texts the annotation margin fell from +1.1 to -0.6 (one seed), below
        the teacher's own labels (``benchmarks/results/dropout_ema/``).
    renormalize, filter_out_of_candidate, sharpen, classwise_selection, \
small_loss_selection, confident_targets, consistency, mixup : bool, default=True
        Switch each component of the refinery on or off (``loss="candist"``
        only), e.g. to rerun the paper's ablation. ``small_loss_selection=False``
        selects nothing; ``classwise_selection=False`` selects the fraction
        ``delta`` over all in-candidate samples at once.
    consistency_means : {"batch", "separate"}, default="batch"
        How the consistency term averages its two parts, CE against the target
        on the in-candidate samples and KL between the views on the
        out-of-candidate ones (:func:`skcandist.losses.consistency_term`).
        "separate" is the paper's (App. A.2): one mean per part. "batch" takes
        one mean over the batch, so that a handful of out-of-candidate samples
        do not weigh as much as the rest of the batch. Measured with
        ``benchmarks/probe_student_heads.py`` (one seed, the 12 settings of
        ``benchmarks/results/consistency_means/student_heads.md``): "separate"
        cost 4.2 points of annotation accuracy summed over the settings (3.8 on
        SST-2) and gained 1.9 of test accuracy (2.0 | 1.0 on SMS spam with the
        weak embedding teacher); the annotation is the student's job, so
        "batch" is the default.
    ramp_epochs : int, default=10
        The weight eta of the consistency and mixup terms rises linearly from 0
        to 1 over this many epochs: ``eta = min(1, (epoch - 1) / ramp_epochs)``,
        0 in the first epoch; 0 makes eta 1 from the start.
    mixup_alpha : float, default=4.0
        Mixing weights are drawn from Beta(mixup_alpha, mixup_alpha).
    lws_beta : float, default=1.0
        Weight of the non-candidate term of ``loss="lws"``.
    teacher_model : {"em", None}, default="em"
        ``loss="candist"`` only. "em" first learns, without gold labels, how
        reliable each kind of teacher answer is (a sole candidate, the preferred
        label of several, another member, a label outside the set) with
        :func:`skcandist.teacher_model.fit_teacher_model`: EM between those
        rates and out-of-fold predictions on frozen embeddings. Its posterior
        replaces the uniform initial targets and the 0/1 mask of Eq. 1's
        re-normalisation, and a class it finds plausible (posterior >= 0.1)
        passes the out-of-candidate filter. This goes beyond the paper: it uses
        the teacher's preferred label (``AnnotatedTexts.single``) and lets a
        label outside the set become a target when the evidence is strong.
        None is the paper's refinery (uniform targets over the set). Skipped for
        fewer than 10 texts.
    validation_fraction : float, default=None
        Hold out this fraction of the training texts (never trained on) and stop
        when their CC loss -- how much mass the student puts on their candidate
        sets -- has not improved for ``patience`` epochs, keeping the best
        epoch's weights. None trains for ``max_epochs``. The held-out loss is
        lowest early, before the refinery has corrected the candidate sets, so
        this tends to stop "candist" too soon; prefer tuning ``max_epochs``.
    patience : int, default=5
        Epochs without improvement before early stopping.
    augment : callable, default=None
        ``augment(texts) -> texts`` making the augmented view of the consistency
        term (e.g. back-translation); None uses a second dropout view. Augmented
        texts computed in advance can be passed to ``fit(augmented=...)``.
    cache_dir : str, default=None
        Also keep frozen embeddings on disk there (see
        :func:`skcandist.encoders.encode`); they are always cached in memory.
    callbacks : list of skorch callbacks, default=None
        Added to the net's (e.g. ``skorch.callbacks.Checkpoint``).
    random_state : int, default=0
        Seeds the weights, dropout, shuffling and mixup: same data, parameters
        and seed give the same predictions on CPU.
    device : str, default="cpu"
    mixed_precision : bool, default=True
        On a CUDA device, train under :func:`torch.autocast`: bfloat16 where
        the GPU supports it, else float16 with a gradient scaler. Ignored on
        any other device (the CPU trains in full precision).
    ema_decay : float in [0, 1), default=0.99
        The fitted student predicts with an exponential moving average of its
        weights over the optimisation steps, ``avg <- d * avg + (1 - d) * w``
        after step ``t`` with ``d = min(ema_decay, (1 + t) / (10 + t))``, so
        that a short run does not keep its first weights (the refinery's own
        per-sample predictions still come from the weights being trained). An
        average of about the last hundred steps is less swayed by the last
        batches' noisy targets than the last step's weights: over the 12
        settings of ``benchmarks/probe_student_heads.py`` it raised the summed
        test margins from +4.3 to +7.1 points, annotation -0.2
        (``benchmarks/results/dropout_ema/``). 0 keeps the last step's
        weights. With ``validation_fraction`` there is no average: early
        stopping keeps its best epoch's weights.
    verbose : int, default=0
        1 prints skorch's per-epoch log.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    net_ : skorch.NeuralNet
        The trained net (``net_.history`` holds the per-epoch log, with the
        refinery's group sizes ``n_selected``, ``n_confident_out``, ``n_ignored``).
    n_features_in_ : int
        Dimension of the encoder's embeddings.
    answer_reliability_ : dict or None
        With ``teacher_model="em"``: the learnt share of texts whose true class
        is the sole candidate, the preferred one of several, another member, or
        outside the set (keys "sole", "primary", "other", "outside"); None
        without a teacher model.

    Notes
    -----
    The defaults for the frozen encoder (head of 256 units, dropout 0.1, lr 3e-3,
    50 epochs, batch 32, the EM teacher model) were measured with
    ``benchmarks/bench_quality.py``: simulated teachers on TREC, Banking77, SST-2
    and SMS spam, 2,000 texts, 3 seeds; its ``results/quality.md`` gives every
    figure, including the settings where the student does not yet match
    cleanlab (weak binary teachers). The baselines share these defaults and may
    prefer others (lower ``lr``, fewer epochs).

    ``fit(X, y)`` with ``X`` an :class:`AnnotatedTexts` takes the candidate sets
    from ``X`` and *ignores* ``y`` for training: in a ``Pipeline`` scored by
    ``cross_val_score``, ``y`` are the gold labels, used only for scoring.

    Examples
    --------
    >>> from skcandist import CanDistClassifier
    >>> texts = ["win a free prize now", "free cash, call now", "see you at lunch",
    ...          "lunch at noon?", "claim your free prize", "meet me at noon"]
    >>> candidates = [[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [0, 1]]
    >>> clf = CanDistClassifier(max_epochs=5, warmup_epochs=1)
    >>> clf = clf.fit(texts, candidates, classes=["spam", "ham"])
    >>> clf.predict(["free prize"]).shape, clf.predict_proba(["noon"]).shape
    ((1,), (1, 2))
    """

    def __init__(
        self,
        loss="candist",
        *,
        delta=0.5,
        gamma=0.85,
        tau=0.99,
        warmup_epochs=10,
        max_epochs=50,
        lr=None,
        batch_size=32,
        max_length=128,
        weight_decay=0.01,
        encoder=None,
        finetune=False,
        hidden_size=256,
        dropout=0.1,
        renormalize=True,
        filter_out_of_candidate=True,
        sharpen=True,
        classwise_selection=True,
        small_loss_selection=True,
        confident_targets=True,
        consistency=True,
        mixup=True,
        consistency_means="batch",
        ramp_epochs=10,
        mixup_alpha=4.0,
        lws_beta=1.0,
        teacher_model="em",
        validation_fraction=None,
        patience=5,
        augment=None,
        cache_dir=None,
        callbacks=None,
        random_state=0,
        device="cpu",
        mixed_precision=True,
        ema_decay=0.99,
        verbose=0,
    ):
        self.loss = loss
        self.delta = delta
        self.gamma = gamma
        self.tau = tau
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.weight_decay = weight_decay
        self.encoder = encoder
        self.finetune = finetune
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.renormalize = renormalize
        self.filter_out_of_candidate = filter_out_of_candidate
        self.sharpen = sharpen
        self.classwise_selection = classwise_selection
        self.small_loss_selection = small_loss_selection
        self.confident_targets = confident_targets
        self.consistency = consistency
        self.mixup = mixup
        self.consistency_means = consistency_means
        self.ramp_epochs = ramp_epochs
        self.mixup_alpha = mixup_alpha
        self.lws_beta = lws_beta
        self.teacher_model = teacher_model
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.cache_dir = cache_dir
        self.callbacks = callbacks
        self.random_state = random_state
        self.device = device
        self.mixed_precision = mixed_precision
        self.ema_decay = ema_decay
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.loss not in _LOSSES:
            raise InvalidInputError(
                f"loss must be one of {list(_LOSSES)}, not {self.loss!r}."
            )
        ranges = {
            "delta": (self.delta, 0.0, 1.0),
            "gamma": (self.gamma, 1e-6, 1.0),
            "tau": (self.tau, 0.0, 1.0),
            "dropout": (self.dropout, 0.0, 0.99),
            "ema_decay": (self.ema_decay, 0.0, 0.9999),
        }
        for name, (value, low, high) in ranges.items():
            if not isinstance(value, numbers.Real) or not low <= value <= high:
                raise InvalidInputError(
                    f"{name} must be a number in [{low}, {high}], not {value!r}."
                )
        for name in ("max_epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise InvalidInputError(
                    f"{name} must be an integer >= 1, not {value!r}."
                )
        if self.validation_fraction is not None and not (
            isinstance(self.validation_fraction, numbers.Real)
            and 0 < self.validation_fraction < 1
        ):
            raise InvalidInputError(
                "validation_fraction must be None or a number in (0, 1), not "
                f"{self.validation_fraction!r}."
            )
        for name in ("warmup_epochs", "ramp_epochs", "hidden_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 0:
                raise InvalidInputError(
                    f"{name} must be an integer >= 0, not {value!r}."
                )
        if self.lr is not None and not (
            isinstance(self.lr, numbers.Real) and self.lr > 0
        ):
            raise InvalidInputError(f"lr must be a positive number, not {self.lr!r}.")
        if self.consistency_means not in _CONSISTENCY_MEANS:
            raise InvalidInputError(
                "consistency_means must be 'batch' or 'separate', not "
                f"{self.consistency_means!r}."
            )
        if self.teacher_model not in _TEACHER_MODELS:
            raise InvalidInputError(
                f"teacher_model must be 'em' or None, not {self.teacher_model!r}."
            )
        if self.augment is not None and not callable(self.augment):
            raise InvalidInputError(
                "augment must be a callable texts -> texts (pass precomputed "
                "augmented texts to fit(augmented=...))."
            )

    def _check_targets(self, X, y, classes):
        """Texts, dense candidate matrix, classes and single labels of the input."""
        if isinstance(X, AnnotatedTexts):
            texts = check_texts(X)
            cands = _check_matrix(X.candidates, len(texts))
            classes = np.asarray(X.classes if classes is None else classes)
            single = X.single
            single = None if single is None else np.asarray(single, dtype=int)
        else:
            texts = check_texts(X)
            if y is None:
                raise InvalidInputError(
                    "y is required: a candidate matrix (n_texts, n_classes) or "
                    "labels, unless X is an AnnotatedTexts."
                )
            is_matrix = sp.issparse(y) or np.ndim(y) == 2
            if is_matrix:
                cands = _check_matrix(y, len(texts))
                if classes is None:
                    classes = np.arange(cands.shape[1])
                classes = np.asarray(classes)
                single = None
            else:
                labels = np.asarray(y)
                if labels.ndim != 1:
                    raise InvalidInputError(
                        f"y must be 1-D labels or a 2-D matrix, not {labels.ndim}-D."
                    )
                if len(labels) != len(texts):
                    raise InvalidInputError(
                        f"X holds {len(texts)} texts but y has {len(labels)} labels."
                    )
                if labels.dtype.kind == "f" and np.isnan(labels).any():
                    raise InvalidInputError("y holds NaN labels.")
                if any(v is None for v in labels.tolist()):
                    raise InvalidInputError("y holds missing (None) labels.")
                classes = np.unique(labels) if classes is None else np.asarray(classes)
                lookup = {c: i for i, c in enumerate(classes.tolist())}
                unknown = sorted(
                    {v for v in labels.tolist() if v not in lookup}, key=str
                )
                if unknown:
                    raise InvalidInputError(
                        f"y holds labels not in classes: {unknown[:10]}."
                    )
                single = np.array([lookup[v] for v in labels.tolist()], dtype=int)
                cands = np.zeros((len(texts), len(classes)), dtype=np.float32)
                cands[np.arange(len(texts)), single] = 1.0
        if classes.ndim != 1 or len(classes) != cands.shape[1]:
            raise InvalidInputError(
                f"the candidate matrix has {cands.shape[1]} columns but {len(classes)} "
                "classes are named; give one class per column."
            )
        if len(np.unique(classes)) != len(classes):
            raise InvalidInputError("classes holds duplicate names.")
        if len(classes) < 2:
            raise InvalidInputError(
                f"at least two classes are needed, got {classes.tolist()}."
            )
        empty = np.flatnonzero(cands.sum(axis=1) == 0)
        if empty.size:
            raise InvalidInputError(
                f"{empty.size} candidate rows hold no candidate: rows "
                f"{empty[:20].tolist()}{' ...' if empty.size > 20 else ''}; every "
                "text needs at least one candidate label."
            )
        if np.unique(np.flatnonzero(cands.sum(axis=0))).size < 2:
            raise InvalidInputError(
                "the candidate sets name a single class; at least two are needed."
            )
        first = cands.argmax(axis=1)
        if single is None:
            single = first
        else:
            if len(single) != len(texts):
                raise InvalidInputError(
                    f"single holds {len(single)} labels for {len(texts)} texts."
                )
            odd = np.unique(single[(single < -1) | (single >= len(classes))])
            if odd.size:
                raise InvalidInputError(
                    f"single must hold column indices in [0, {len(classes)}) or -1 "
                    f"(no label); found {odd[:5].tolist()}."
                )
            single = np.where(single >= 0, single, first)
        return texts, cands, classes, single

    # ------------------------------------------------------------------ inputs
    def _encoder_path(self):
        return resolve_encoder(self.encoder)

    def _inputs(self, texts, augmented=None):
        """The net's input dict for ``texts`` (and their augmented view)."""
        index = np.arange(len(texts), dtype=np.int64)
        if not self.finetune:
            X = {"x": self._embed(texts), "index": index}
            if augmented is not None:
                X["x_aug"] = self._embed(augmented)
            return X
        X = dict(self._tokenize(texts), index=index)
        if augmented is not None:
            aug = self._tokenize(augmented)
            X["input_ids_aug"] = aug["input_ids"]
            X["attention_mask_aug"] = aug["attention_mask"]
        return X

    def _embed(self, texts):
        return encode(
            texts,
            self.encoder,
            max_length=self.max_length,
            cache_dir=self.cache_dir,
            # A student loaded where its device is missing runs on the CPU.
            device=getattr(self, "_loaded_on", None) or self.device,
        )

    def _tokenize(self, texts):
        # Cached with the path it was loaded from: set_params(encoder=...) must
        # not tokenize for the new encoder with the old vocabulary.
        path = str(self._encoder_path())
        cached = getattr(self, "_tokenizer", None)
        if cached is None or cached[0] != path:
            from transformers import AutoTokenizer

            cached = (path, AutoTokenizer.from_pretrained(path))
            self._tokenizer = cached
        # Padded to the longest text here, not to max_length: each batch is then
        # cut to its own longest member (_trim_padding).
        batch = cached[1](
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        return {
            "input_ids": batch["input_ids"].astype(np.int64),
            "attention_mask": batch["attention_mask"].astype(np.int64),
        }

    def _build_module(self, n_classes, dim=None, pretrained=True):
        if self.finetune:
            return _FineTuned(self.encoder, n_classes, self.dropout, pretrained)
        return _Head(dim, n_classes, self.hidden_size, self.dropout)

    def _build_net(self, module, n_samples):
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        lr = self.lr if self.lr is not None else (3e-5 if self.finetune else 3e-3)
        callbacks = list(self.callbacks or [])
        train_split = None
        if self.validation_fraction and n_samples:
            from skorch.callbacks import EarlyStopping
            from skorch.dataset import ValidSplit

            train_split = ValidSplit(
                self.validation_fraction, stratified=False, random_state=seed
            )
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss", patience=self.patience, load_best=True
                    ),
                )
            )
        net = _RefineryNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=self.weight_decay,
            optimizer__fused=_RefineryNet.fused_adamw(self.device),
            lr=lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=train_split,
            iterator_train__shuffle=True,
            iterator_train__generator=generator,
            predict_nonlinearity=_softmax,
            callbacks=callbacks,
            device=self.device,
            verbose=self.verbose,
        )
        return net

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, classes=None, augmented=None):
        """Train the student on texts and their candidate sets.

        Parameters
        ----------
        X : sequence of str or AnnotatedTexts
            The texts; an :class:`AnnotatedTexts` also brings the candidate sets,
            the class names and the teacher's single labels.
        y : array-like or sparse matrix, default=None
            A 0/1 candidate matrix of shape (n_texts, n_classes), or 1-D labels
            (plain supervised training). Ignored when ``X`` is an
            :class:`AnnotatedTexts` (in a Pipeline, ``y`` is then the gold label
            used for scoring only).
        classes : array-like of shape (n_classes,), default=None
            Names of the columns of a matrix ``y`` (default ``0..C-1``), or all
            possible labels of a 1-D ``y``.
        augmented : sequence of str, default=None
            Precomputed augmented texts (one per text, e.g. back-translations)
            for the consistency term; overrides the ``augment`` parameter.

        Returns
        -------
        self
        """
        self._check_params()
        self.__dict__.pop("_loaded_on", None)  # a refit runs on self.device
        texts, cands, classes, single = self._check_targets(X, y, classes)
        # The teacher's preferred label, -1 where it named none (not the stand-in
        # first candidate that ``single`` holds there for loss="ce").
        primary = (
            np.asarray(X.single, dtype=int)
            if isinstance(X, AnnotatedTexts) and X.single is not None
            else None
        )
        if augmented is None and self.augment is not None:
            augmented = self.augment(list(texts))
        if augmented is not None:
            augmented = check_texts(augmented, "augmented")
            if len(augmented) != len(texts):
                raise InvalidInputError(
                    f"augmented holds {len(augmented)} texts for {len(texts)} texts."
                )
        if (
            self.loss == "candist"
            and self.consistency
            and self.dropout == 0
            and augmented is None
        ):
            warnings.warn(
                "dropout=0 with no augmentation makes the consistency term's two "
                "views identical, so it adds nothing; set dropout > 0, pass "
                "augment= (or fit(augmented=...)), or consistency=False.",
                SkcandistWarning,
                stacklevel=2,
            )
        inputs = self._inputs(texts, augmented)
        seed = 0 if self.random_state is None else int(self.random_state)
        dim = inputs["x"].shape[1] if not self.finetune else None
        teacher = None
        if (
            self.loss == "candist"
            and self.teacher_model == "em"
            and len(texts) >= 2 * _TEACHER_FOLDS
        ):
            features = inputs["x"] if not self.finetune else self._embed(texts)
            teacher = fit_teacher_model(
                features, cands, primary, n_splits=_TEACHER_FOLDS, random_state=seed
            )
        # torch.manual_seed seeds every CUDA device too: fork them all, so that
        # the caller's generators are left as they were.
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(seed)
            module = self._build_module(len(classes), dim)
            net = self._build_net(module, len(texts))
            net.initialize()
            cands_t = torch.as_tensor(cands)
            net.candidates_t = cands_t
            net.single_t = torch.as_tensor(single, dtype=torch.long)
            net.targets_t = L.uniform_targets(cands_t)
            net.weights_t = cands_t
            net.filter_t = cands_t
            if teacher is not None:
                # The teacher model's posterior is the initial target and the
                # weights of Eq. 1's re-normalisation (a soft candidate set that
                # keeps the out-of-fold evidence); a class it finds plausible
                # counts as a candidate for the out-of-candidate filter.
                posterior = torch.as_tensor(teacher.posterior, dtype=torch.float32)
                net.targets_t = posterior.clone()  # overwritten as samples are seen
                net.weights_t = posterior
                net.filter_t = ((posterior >= _PLAUSIBLE) | (cands_t > 0)).float()
            net.probs_t = L.uniform_targets(torch.ones_like(cands_t))
            net.visited_t = torch.zeros(len(texts), dtype=torch.bool)
            net.rng = np.random.RandomState(seed)
            net.n_steps = 0  # optimisation steps taken (the warm-up counts them)
            net.refinery = {
                "loss": self.loss,
                "delta": self.delta,
                "gamma": self.gamma,
                "tau": self.tau,
                "warmup_epochs": self.warmup_epochs,
                "max_epochs": self.max_epochs,
                "renormalize": bool(self.renormalize)
                and self.loss in ("candist", "proden"),
                "filter_out_of_candidate": bool(self.filter_out_of_candidate),
                "sharpen": bool(self.sharpen),
                "classwise_selection": bool(self.classwise_selection),
                "small_loss_selection": bool(self.small_loss_selection),
                "confident_targets": bool(self.confident_targets),
                "consistency": bool(self.consistency),
                "mixup": bool(self.mixup),
                "consistency_means": self.consistency_means,
                "ramp_epochs": self.ramp_epochs,
                "mixup_alpha": self.mixup_alpha,
                "lws_beta": self.lws_beta,
                "has_augmented": augmented is not None,
                "finetune": bool(self.finetune),
                "amp_dtype": _autocast_dtype(self.device, self.mixed_precision),
                # Early stopping keeps its best epoch's own weights instead.
                "ema_decay": 0.0 if self.validation_fraction else float(self.ema_decay),
            }
            # float16 needs its gradients scaled; bfloat16 does not.
            net.grad_scaler = (
                torch.amp.GradScaler("cuda")
                if net.refinery["amp_dtype"] == torch.float16
                else None
            )
            if self.loss == "lws":
                # LWS starts from uniform weights inside and outside each set.
                net.probs_t = L.uniform_targets(torch.ones_like(cands_t))
            net.partial_fit(inputs, cands)
        self._release_buffers(net)
        # Fitted attributes only now: a refit that fails leaves the previous
        # fit whole (classes_ and net_ from the same fit).
        self.classes_ = classes
        self.net_ = net
        self.answer_reliability_ = (
            None
            if teacher is None
            else {
                role: float(rate)
                for role, rate in zip(
                    ("sole", "primary", "other", "outside"), teacher.theta
                )
            }
        )
        self.n_features_in_ = dim if dim is not None else module.out.in_features
        return self

    @staticmethod
    def _release_buffers(net):
        for name in (
            "candidates_t",
            "weights_t",
            "filter_t",
            "single_t",
            "targets_t",
            "probs_t",
            "groups_t",
            "predicted_t",
            "visited_t",
            "rng",
            "grad_scaler",
        ):
            if name in net.__dict__:
                delattr(net, name)

    # -------------------------------------------------------------- inference
    def predict_proba(self, X):
        """Class probabilities in ``classes_`` order.

        Parameters
        ----------
        X : sequence of str or AnnotatedTexts
            Only the texts are read (candidates of an AnnotatedTexts are not).

        Returns
        -------
        ndarray of shape (n_texts, n_classes)
        """
        check_is_fitted(self, "net_")
        texts = check_texts(X)
        inputs = self._inputs(texts)
        probs = self.net_.predict_proba(inputs)
        return np.asarray(probs, dtype=np.float64)

    def predict(self, X):
        """The student's label (argmax over all classes) of each text.

        Parameters
        ----------
        X : sequence of str or AnnotatedTexts

        Returns
        -------
        ndarray of shape (n_texts,)
            Values of ``classes_``.
        """
        check_is_fitted(self, "net_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy of :meth:`predict` against gold labels ``y``.

        Parameters
        ----------
        X : sequence of str or AnnotatedTexts
            Only the texts are read.
        y : array-like of shape (n_texts,)
            Gold labels (values of ``classes_``).
        sample_weight : array-like, default=None

        Returns
        -------
        float
        """
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    # ----------------------------------------------------------------- pickle
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_tokenizer", None)
        state.pop("_loaded_on", None)
        net = state.pop("net_", None)
        if net is not None:
            buffer = io.BytesIO()
            torch.save(net.module_.state_dict(), buffer)
            state["_module_state"] = buffer.getvalue()
            state["_history"] = list(net.history)
            state["_module_shape"] = (len(self.classes_), self.n_features_in_)
        return state

    def __setstate__(self, state):
        module_state = state.pop("_module_state", None)
        history = state.pop("_history", None)
        shape = state.pop("_module_shape", None)
        super().__setstate__(state)
        if module_state is not None:
            n_classes, dim = shape
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SkcandistWarning)
                module = self._build_module(n_classes, dim, pretrained=False)
            # Tensors saved on a GPU load on the CPU first (map_location); the
            # net then moves them to its device, or stays on the CPU where
            # that device does not exist here.
            module.load_state_dict(
                torch.load(
                    io.BytesIO(module_state), map_location="cpu", weights_only=True
                )
            )
            device = _available_device(self.device)
            if device != self.device:
                self._loaded_on = device
            self.net_ = self._build_net(module, 0)
            self.net_.set_params(device=device)
            self.net_.initialize()
            from skorch.history import History

            self.net_.history = History(history or [])

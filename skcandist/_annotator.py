"""CandidateAnnotator: the estimator shell around :mod:`skcandist.llm`.

The estimator holds the parameters, validates them, and wires the pieces of
:mod:`skcandist.llm` together; each piece is tested on its own:

- demonstration retrieval: :class:`skcandist.llm.retrieval.DemoRetriever`;
- request building, cache key and endpoint identity:
  :mod:`skcandist.llm.building`;
- fetching (client and cache lifecycle, retries, cancellation, the fatal-error
  stop, usage): :mod:`skcandist.llm.fetching` on :mod:`skcandist.llm.requests`;
- answer decoding (text, JSON, log-probabilities, calibration):
  :mod:`skcandist.llm.decoding` on :mod:`skcandist.llm.parsing`;
- the empty and failure policies: :mod:`skcandist.llm.policies`.
"""

import json
import numbers
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._annotated import AnnotatedTexts
from ._validation import check_texts
from .exceptions import (
    AnnotationError,
    CacheWriteWarning,
    InvalidInputError,
    UnknownLabelWarning,
)
from .llm import building, decoding, fetching, parsing, policies, prompts
from .llm import requests as llm_requests
from .llm.cache import default_cache_path
from .llm.retrieval import RETRIEVALS, DemoRetriever

__all__ = ["CandidateAnnotator"]

_CALIBRATIONS = (None, "content_free", "batch")
_CONTENT_FREE_TEXT = "N/A"
_AUTO = "auto"


def _check_labels(labels):
    if isinstance(labels, str):
        raise InvalidInputError(
            "labels must be a list of label names or a dict name -> description, "
            "not a single string."
        )
    if isinstance(labels, dict):
        items = list(labels.items())
    else:
        try:
            items = [(name, None) for name in labels]
        except TypeError as exc:
            raise InvalidInputError(
                "labels must be a list of label names or a dict name -> "
                f"description; got {type(labels).__name__}."
            ) from exc
    out = {}
    seen = {}
    for name, description in items:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"label names must be strings; got {name!r} ({type(name).__name__})."
            )
        if not name.strip():
            raise InvalidInputError("labels hold an empty label name.")
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(
                f"the description of label {name!r} must be a string or None."
            )
        key = parsing.label_key(name)
        if not key:
            raise InvalidInputError(
                f"label {name!r} holds no letter or digit; an answer could never "
                "name it."
            )
        if key in seen:
            raise InvalidInputError(
                f"labels {seen[key]!r} and {name!r} differ only in case, spacing or "
                "punctuation, so no answer can tell them apart; rename one."
            )
        seen[key] = name
        out[name] = description or None
    if len(out) < 2:
        raise InvalidInputError(
            f"at least two labels are needed; got {len(out)} ({list(out)})."
        )
    return out


def _check_choice(name, value, choices):
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {choices}; got {value!r}.")


def _check_number(name, value, low=None, high=None, integer=False, none_ok=False):
    if value is None and none_ok:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidInputError(
            f"{name} must be {'an integer' if integer else 'a number'}"
            f"{' or None' if none_ok else ''}; got {value!r}."
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInputError(
            f"{name} must lie in [{low}, {high if high is not None else 'inf'}]; "
            f"got {value!r}."
        )


def _check_label_tokens(value, labels):
    """``label_tokens`` as a list of sets of pieces, "auto" or None."""
    if value is None or (isinstance(value, str) and value == _AUTO):
        return value
    if not isinstance(value, dict):
        raise InvalidInputError(
            "label_tokens must be 'auto', None or a dict label -> first token "
            f"(or list of tokens); got {type(value).__name__}."
        )
    unknown = [k for k in value if k not in labels]
    if unknown:
        raise InvalidInputError(
            f"label_tokens names labels that are not in labels: {unknown[:5]}."
        )
    out = []
    for name in labels:
        if name not in value:
            raise InvalidInputError(f"label_tokens has no token for label {name!r}.")
        tokens = value[name]
        tokens = [tokens] if isinstance(tokens, str) else list(tokens)
        if not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise InvalidInputError(
                f"label_tokens[{name!r}] must be a non-blank string or a list of them."
            )
        out.append(set(tokens))
    return out


#: Texts whose prompts are built at once (see ``CandidateAnnotator._chunks``).
_PLAN_CHUNK = 1000


class CandidateAnnotator(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Ask an LLM for the candidate labels of each text (the CanDist teacher).

    The annotator talks to any OpenAI-compatible endpoint through the ``openai``
    client. For each text it sends one request (few-shot demonstrations
    retrieved from ``examples`` by similarity, as in the paper) and turns the
    answer into a candidate set: a row of a sparse 0/1 matrix whose columns
    follow :attr:`classes_`. Answers are cached on disk as they arrive (in the
    user's cache folder unless ``cache`` says otherwise), so a rerun, a
    ``clone`` or a cross-validation fold sends no request for a text it has
    seen, and an interrupted run loses no answer it paid for.

    Parameters
    ----------
    labels : list of str or dict
        The label names, or a dict name -> description (descriptions go to the
        class list of the prompt). At least two, distinct up to case.
    model : str, default="gpt-4o-mini"
        The model name sent to the endpoint.
    base_url : str, default=None
        The endpoint, e.g. ``"http://127.0.0.1:8000/v1"``. None: the ``openai``
        client's own default (``OPENAI_BASE_URL`` or api.openai.com).
    prompt : {"single", "add", "all"} or str, default="all"
        The paper's prompt style (with ``"single"`` only the first label an
        answer names is kept, so that every set is a single label), or a user
        message template holding
        ``{text}`` and ``{labels}`` (and optionally ``{task}``). Used by the
        chat answer modes; ``answer="logprobs"`` uses its raw few-shot prompt.
    task : str, default=None
        One-line description of the task and data, for the system message (and
        the header of the log-probability prompt).
    examples : sequence of (str, str), default=None
        The few-shot pool: ``(text, label)`` pairs, every label in ``labels``.
        Demonstrations show single labels, for every prompt style.
    n_examples : int, default=10
        Demonstrations retrieved per text (the paper's 10). An identical text in
        the pool is never shown as its own demonstration.
    retrieval : {"embedding", "tfidf", "random"}, default="embedding"
        How demonstrations are chosen: the nearest by sentence-embedding cosine
        similarity (the paper), the nearest by TF-IDF cosine similarity (no
        torch needed), or a random draw seeded by ``random_state`` and the text.
        The nearest demonstration comes last, next to the query.
    encoder : str, default=None
        Sentence-transformers model name or path for ``retrieval="embedding"``;
        None uses the bundled all-MiniLM-L6-v2 (offline).
    temperature : float or None, default=0.3
        Sampling temperature (the paper's 0.3); None sends none (reasoning
        models reject the field).
    seed : int, default=None
        Sent as the request's ``seed`` (best-effort determinism where the
        endpoint supports it); None sends none.
    max_tokens : int, default=None
        Sent as ``max_tokens`` in the chat answer modes (the log-probability
        modes always ask for one token). An answer cut off by the limit is a
        failed attempt, never a parsed answer.
    extra_body : dict, default=None
        Extra JSON fields of every request body, passed through as the
        client's ``extra_body`` (e.g. vLLM's ``{"guided_json": ...}``); part of
        the cache key.
    answer : {"json", "text", "logprobs", "chat_logprobs"}, default="json"
        ``"json"``: chat answers constrained by a ``response_format`` JSON
        schema (a list of label names); ``"text"``: the same request without
        ``response_format``, for endpoints that lack it (parsed tolerantly);
        ``"logprobs"``: the legacy completions endpoint scores the first token
        of each label name after a raw few-shot prompt (for small base
        models); ``"chat_logprobs"``: the same scoring through the chat
        endpoint's ``top_logprobs``.
    top_logprobs : int, default=20
        How many top first tokens the log-probability modes ask for (the chat
        endpoint allows at most 20, OpenAI's completions endpoint 5).
    proba_mass : float, default=0.9
        Log-probability modes: candidates are the smallest set of most probable
        labels whose probabilities reach this mass.
    proba_ratio : float, default=None
        Log-probability modes: if given, candidates are instead all labels with
        probability at least ``proba_ratio`` times the top one.
    label_tokens : "auto", dict or None, default="auto"
        Log-probability modes: which generated token stands for each label. A
        top token counts for a label only when it is that label's exact first
        token. ``"auto"`` asks the server's tokenizer route at fit (vLLM's
        ``/tokenize``, llama.cpp's ``/extras/tokenize``); a dict gives label ->
        first token (or a list of tokens); None, or ``"auto"`` on an endpoint
        without such a route, falls back on the prefix rule of
        :func:`skcandist.llm.parsing.label_distribution` (a token that begins
        the name counts). :attr:`label_tokens_` shows what was used.
    calibration : {None, "content_free", "batch"}, default=None
        Log-probability modes: divide the label distribution by that of a
        content-free input (``"N/A"``, one extra cached request) or by the mean
        distribution of the texts given to :meth:`fit` (estimated once there,
        in :attr:`calibration_reference_`, so that a text's candidates do not
        depend on which texts are annotated with it), then renormalise.
    n_jobs : int, default=4
        Requests in flight at once.
    max_retries : int, default=5
        Retries per request on 429, 5xx, timeouts, connection errors,
        malformed bodies and unusable answers (empty, refused, cut off, not
        JSON in the JSON mode), with exponential backoff and jitter; a
        ``Retry-After`` is honoured. A 401, 403, 404 or an exhausted quota is
        not retried: it stops the run with one
        :class:`~skcandist.exceptions.EndpointError`.
    backoff : float, default=0.5
        Seconds before the first retry; retry ``k`` waits ``backoff * 2**k``
        times a random factor in [0.5, 1.5) (at most 30 s).
    timeout : float, default=60.0
        Seconds per request.
    max_requests_per_minute, max_tokens_per_minute : float, default=None
        Pace the online requests below these rates (one limiter shared by
        all ``n_jobs`` threads; tokens estimated as four characters each plus
        the answer), for endpoints that limit per minute. None: no limit.
    use_batch_api : bool, default=False
        Send what the cache lacks through the OpenAI Batch API (half the
        online price, larger rate limits, answers within 24 hours): one JSON
        line per request, uploaded with ``files.create(purpose="batch")``,
        submitted with ``batches.create``, split beyond 50,000 lines or 200 MB.
        Batch ids are recorded in the answer cache as soon as they exist, so
        a rerun after an interrupt resumes them instead of paying twice.
        Answers are matched by ``custom_id`` (the cache key) and cached like
        online ones; failed lines, lines of expired or cancelled batches and
        unusable answers are retried online. See :doc:`/large_jobs`.
    batch_poll_interval : float, default=60.0
        Seconds between two looks at running batches.
    batch_wait : bool, default=True
        False submits the batches and raises
        :class:`~skcandist.exceptions.BatchPendingError` naming them at
        once; call again later (same texts, same cache) to collect.
    cache : "auto", str, path-like or None, default="auto"
        The SQLite answer cache shared by reruns, clones and processes, written
        as answers arrive. ``"auto"``: ``answers.sqlite`` in the user's cache
        folder (``$SKCANDIST_CACHE_DIR``, else ``$XDG_CACHE_HOME/skcandist``,
        else ``~/.cache/skcandist``); a path: that file; None keeps no answers
        between calls.
    client_factory : callable, default=None
        Builds the ``openai.OpenAI`` client (called with no argument), e.g. to
        pass credentials another way; its own retries are switched off
        (``with_options(max_retries=0)``), since ``max_retries`` here does
        them. None builds one from ``base_url``, ``timeout`` and
        ``OPENAI_API_KEY``. Answers are cached under the URL the client
        actually talks to.
    on_empty : {"all", "abstain", "error"}, default="all"
        What an answer with no valid label becomes: every label (no pruning),
        an empty row (the text abstains; a student should skip it), or a
        failure of that text. Never a guess.
    on_failure : {"raise", "all", "abstain"}, default="raise"
        What to do with texts whose request failed for good, after every
        other answer was received and cached: raise an
        :class:`~skcandist.exceptions.AnnotationError` listing them, or give
        them every label, or an empty row. :attr:`failures_` lists them in
        every case.
    random_state : int, default=None
        Seeds the backoff jitter and ``retrieval="random"``.
    verbose : int, default=1
        0: silent; 1: a progress bar while requests are sent.

    Attributes
    ----------
    classes_ : ndarray of str
        The label names, in column order.
    label_descriptions_ : dict
        Label name -> description (or None).
    examples_ : list of (str, str)
        The validated few-shot pool.
    usage_ : dict
        Counters of the annotation done while fitting (:meth:`fit_transform`;
        zeros after a plain :meth:`fit`): ``texts``, ``requests`` (HTTP
        attempts, retries included), ``retries``, ``cache_hits``,
        ``prompt_tokens``, ``completion_tokens`` (as the endpoint reported
        them), ``failures``, ``unknown_labels`` (answer items naming no label,
        dropped) and ``empty_answers``. Later :meth:`annotate` and
        :meth:`transform` calls leave it alone: their own counters are on the
        :class:`AnnotatedTexts` they return (``out.usage``).
    failures_ : dict
        Of the annotation done while fitting: text index -> reason it failed
        (``out.failures`` for later calls).
    label_proba_ : ndarray of shape (n_texts, n_classes) or None
        Of the annotation done while fitting, in a log-probability mode: each
        text's (calibrated) label distribution; NaN rows for failed texts,
        zero rows where no label token was among the top tokens. None in the
        chat answer modes (``out.label_proba`` for later calls).
    calibration_reference_ : ndarray of shape (n_classes,) or None
        With ``calibration="batch"``: the mean label distribution of the texts
        given to :meth:`fit`.
    label_tokens_ : list of set of str or None
        Log-probability modes: each label's first token(s) as used, or None
        for the prefix rule.

    See Also
    --------
    skcandist.metrics.candidate_report : Quality of candidate sets.

    Notes
    -----
    The API key is never a parameter: the client reads ``OPENAI_API_KEY`` (or
    ``client_factory`` supplies credentials). The client is built on first use,
    built again when ``base_url``, ``timeout`` or ``client_factory`` change
    (a ``set_params`` is obeyed on the next call, without a refit), and
    dropped when the annotator is pickled. A fitted annotator may annotate
    from several threads at once.

    What is retried, what stops a run, what is cached and how to resume:
    see the failure-handling page of the documentation.

    :meth:`transform` is *deferred*: it returns texts whose candidates are only
    requested when read, so that a fitted ``Pipeline`` whose student only reads
    the texts predicts without the LLM. :meth:`fit_transform` and
    :meth:`annotate` request at once.

    Examples
    --------
    >>> from skcandist.testing import FakeLLMServer
    >>> from skcandist import CandidateAnnotator
    >>> def respond(request):
    ...     text = request["messages"][-1]["content"]
    ...     return '["spam", "ham"]' if "maybe" in text else '["spam"]'
    >>> with FakeLLMServer(respond) as server:
    ...     annotator = CandidateAnnotator(["spam", "ham"], base_url=server.base_url,
    ...                                    cache=None, verbose=0)
    ...     out = annotator.fit_transform(["WIN CASH NOW", "maybe a prize?"])
    >>> out.candidates.toarray().tolist(), out.single.tolist()
    ([[1, 0], [1, 1]], [0, 0])
    >>> annotator.usage_["requests"]
    2
    """

    def __init__(
        self,
        labels,
        *,
        model="gpt-4o-mini",
        base_url=None,
        prompt="all",
        task=None,
        examples=None,
        n_examples=10,
        retrieval="embedding",
        encoder=None,
        temperature=0.3,
        seed=None,
        max_tokens=None,
        extra_body=None,
        answer="json",
        top_logprobs=20,
        proba_mass=0.9,
        proba_ratio=None,
        label_tokens="auto",
        calibration=None,
        n_jobs=4,
        max_retries=5,
        backoff=0.5,
        timeout=60.0,
        max_requests_per_minute=None,
        max_tokens_per_minute=None,
        use_batch_api=False,
        batch_poll_interval=60.0,
        batch_wait=True,
        cache="auto",
        client_factory=None,
        on_empty="all",
        on_failure="raise",
        random_state=None,
        verbose=1,
    ):
        self.labels = labels
        self.model = model
        self.base_url = base_url
        self.prompt = prompt
        self.task = task
        self.examples = examples
        self.n_examples = n_examples
        self.retrieval = retrieval
        self.encoder = encoder
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self.extra_body = extra_body
        self.answer = answer
        self.top_logprobs = top_logprobs
        self.proba_mass = proba_mass
        self.proba_ratio = proba_ratio
        self.label_tokens = label_tokens
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.max_requests_per_minute = max_requests_per_minute
        self.max_tokens_per_minute = max_tokens_per_minute
        self.use_batch_api = use_batch_api
        self.batch_poll_interval = batch_poll_interval
        self.batch_wait = batch_wait
        self.cache = cache
        self.client_factory = client_factory
        self.on_empty = on_empty
        self.on_failure = on_failure
        self.random_state = random_state
        self.verbose = verbose

    # -- scikit-learn plumbing ----------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.non_deterministic = True
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        for name in ("_clients", "_caches"):
            state.pop(name, None)
        return state

    # -- parameters -----------------------------------------------------------
    def _validate_params(self):
        labels = _check_labels(self.labels)
        if self.model is None or not isinstance(self.model, str) or not self.model:
            raise InvalidInputError(f"model must be a model name; got {self.model!r}.")
        if self.base_url is not None and not isinstance(self.base_url, str):
            raise InvalidInputError("base_url must be a URL string or None.")
        if self.prompt not in prompts.PROMPT_STYLES:
            if not isinstance(self.prompt, str) or "{" not in self.prompt:
                raise InvalidInputError(
                    f"prompt must be one of {prompts.PROMPT_STYLES} or a template "
                    f"holding {{text}} and {{labels}}; got {self.prompt!r}."
                )
            prompts.check_template(self.prompt)
        if self.task is not None and not isinstance(self.task, str):
            raise InvalidInputError("task must be a string or None.")
        _check_number("n_examples", self.n_examples, 0, integer=True)
        _check_choice("retrieval", self.retrieval, RETRIEVALS)
        _check_number("temperature", self.temperature, 0, 2, none_ok=True)
        _check_number("seed", self.seed, integer=True, none_ok=True)
        _check_number("max_tokens", self.max_tokens, 1, integer=True, none_ok=True)
        if self.extra_body is not None:
            if not isinstance(self.extra_body, dict):
                raise InvalidInputError(
                    "extra_body must be a dict of extra request fields or None; "
                    f"got {type(self.extra_body).__name__}."
                )
            try:
                json.dumps(self.extra_body)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"extra_body must be JSON-serialisable: {exc}"
                ) from None
        _check_choice("answer", self.answer, building.ANSWER_MODES)
        _check_number("top_logprobs", self.top_logprobs, 1, integer=True)
        _check_number("proba_mass", self.proba_mass, 0, 1)
        _check_number("proba_ratio", self.proba_ratio, 0, 1, none_ok=True)
        _check_choice("calibration", self.calibration, _CALIBRATIONS)
        _check_number("n_jobs", self.n_jobs, 1, integer=True)
        _check_number("max_retries", self.max_retries, 0, integer=True)
        _check_number("backoff", self.backoff, 0)
        _check_number("timeout", self.timeout, 0)
        if self.timeout <= 0:
            raise InvalidInputError(f"timeout must be positive; got {self.timeout}.")
        for name in ("max_requests_per_minute", "max_tokens_per_minute"):
            value = getattr(self, name)
            _check_number(name, value, 0, none_ok=True)
            if value is not None and value <= 0:
                raise InvalidInputError(
                    f"{name} must be positive or None; got {value}."
                )
        if not isinstance(self.use_batch_api, (bool, np.bool_)):
            raise InvalidInputError(
                f"use_batch_api must be True or False; got {self.use_batch_api!r}."
            )
        _check_number("batch_poll_interval", self.batch_poll_interval, 0)
        if not isinstance(self.batch_wait, (bool, np.bool_)):
            raise InvalidInputError(
                f"batch_wait must be True or False; got {self.batch_wait!r}."
            )
        if self.cache is not None and not (
            isinstance(self.cache, str) or hasattr(self.cache, "__fspath__")
        ):
            raise InvalidInputError(
                f"cache must be 'auto', a file path or None; got {self.cache!r}."
            )
        _check_choice("on_empty", self.on_empty, policies.ON_EMPTY)
        _check_choice("on_failure", self.on_failure, policies.ON_FAILURE)
        _check_number("verbose", self.verbose, 0, integer=True)
        if self.client_factory is not None and not callable(self.client_factory):
            raise InvalidInputError("client_factory must be callable or None.")
        return labels

    def _check_examples(self, labels):
        if self.examples is None:
            return []
        if isinstance(self.examples, (str, dict)):
            raise InvalidInputError(
                "examples must be a sequence of (text, label) pairs."
            )
        pool = []
        for i, pair in enumerate(self.examples):
            if isinstance(pair, str) or len(pair) != 2:
                raise InvalidInputError(
                    f"examples[{i}] must be a (text, label) pair; got {pair!r}."
                )
            text, label = pair
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"examples[{i}] has no text: {text!r}.")
            if label not in labels:
                raise InvalidInputError(
                    f"examples[{i}] has label {label!r}, which is not in labels "
                    f"{list(labels)}."
                )
            pool.append((text, label))
        return pool

    # -- fit ------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Validate the parameters and index the few-shot pool.

        Nothing is requested, except with ``calibration="batch"`` (the label
        distributions of ``X``, to estimate the reference; cached, so that a
        following annotation of ``X`` sends nothing more) and, in a
        log-probability mode with ``label_tokens="auto"``, one tokenizer call
        per label where the server has a tokenizer route.

        Parameters
        ----------
        X : sequence of str, default=None
            Texts; required with ``calibration="batch"``, else only checked.
        y : None
            Ignored; the annotator needs no labels.

        Returns
        -------
        self
        """
        self._fit(X)
        return self

    def _fit(self, X):
        """Fit; returns the checked texts (or None) and, with
        ``calibration="batch"``, the answers collected for them (else None)."""
        labels = self._validate_params()
        texts = None if X is None else check_texts(X)
        classes = np.array(list(labels), dtype=object)
        examples = self._check_examples(labels)
        retriever = DemoRetriever(
            examples,
            self.n_examples,
            method=self.retrieval,
            encoder=self.encoder,
            random_state=self.random_state,
        ).fit()
        label_tokens = _check_label_tokens(self.label_tokens, labels)
        if self.answer not in building.LOGPROB_MODES:
            label_tokens = None
        elif isinstance(label_tokens, str):  # "auto"
            label_tokens = fetching.first_tokens(
                self.base_url,
                self.model,
                list(labels),
                timeout=min(self.timeout, 10),
                api_key=os.environ.get("OPENAI_API_KEY"),
            )
        self.classes_ = classes
        self.label_descriptions_ = dict(labels)
        self.examples_ = examples
        self.label_tokens_ = label_tokens
        self._retriever = retriever
        self.calibration_reference_ = None
        self.usage_ = llm_requests.Usage().as_dict()
        self.failures_ = {}
        self.label_proba_ = None
        collected = None
        if self.calibration == "batch" and self.answer in building.LOGPROB_MODES:
            if texts is None:
                raise InvalidInputError(
                    "calibration='batch' estimates its reference from the texts "
                    "given to fit; call fit(X) or fit_transform(X)."
                )
            collected = self._collect(texts)
            proba = self._decoder().distributions(collected["records"])
            ok = ~np.isnan(proba).any(axis=1) & (np.nan_to_num(proba).sum(axis=1) > 0)
            if ok.any():
                self.calibration_reference_ = proba[ok].mean(axis=0)
        return texts, collected

    # -- the pieces -----------------------------------------------------------
    def _holders(self):
        # setdefault is atomic: threads sharing one annotator share the holders.
        clients = self.__dict__.setdefault("_clients", fetching.ClientHolder())
        caches = self.__dict__.setdefault("_caches", fetching.CacheHolder())
        return clients, caches

    def _get_client(self):
        return self._holders()[0].get(self.base_url, self.timeout, self.client_factory)

    def _cache_path(self):
        if self.cache is None:
            return None
        if isinstance(self.cache, str) and self.cache == _AUTO:
            return str(default_cache_path())
        return str(self.cache)

    def _get_cache(self):
        return self._holders()[1].get(self._cache_path())

    def _identity(self):
        """The endpoint's name in cache keys: the URL actually talked to."""
        client = self._get_client() if self.client_factory is not None else None
        return building.endpoint_identity(self.base_url, client=client)

    def _builder(self):
        return building.RequestBuilder(
            self.label_descriptions_,
            model=self.model,
            prompt=self.prompt,
            task=self.task,
            answer=self.answer,
            temperature=self.temperature,
            top_logprobs=self.top_logprobs,
            seed=self.seed,
            max_tokens=self.max_tokens,
            extra_body=self.extra_body,
        )

    def _decoder(self):
        return decoding.AnswerDecoder(
            self.label_descriptions_,
            self.answer,
            first_only=self.prompt == "single",
            proba_mass=self.proba_mass,
            proba_ratio=self.proba_ratio,
            first_tokens=self.label_tokens_,
        )

    def _with_extra(self, texts):
        """The texts, plus the content-free input where calibration needs it."""
        all_texts = list(texts)
        if self.answer in building.LOGPROB_MODES and self.calibration == "content_free":
            all_texts.append(_CONTENT_FREE_TEXT)
        return all_texts

    def _chunks(self, all_texts):
        """``(plan, keys)`` of ``all_texts``, :data:`_PLAN_CHUNK` texts at a
        time: prompts are built and demonstrations retrieved chunk by chunk
        while the answers of the previous chunk arrive, so that memory grows
        with the answers, not with the prompts."""
        builder = self._builder()
        identity = self._identity()
        for start in range(0, len(all_texts), _PLAN_CHUNK):
            chunk = all_texts[start : start + _PLAN_CHUNK]
            demos = self._retriever.select(chunk)
            plan = [builder.build(t, d) for t, d in zip(chunk, demos)]
            keys = [building.cache_key(r, identity, self.answer) for r in plan]
            yield plan, keys

    def _plan(self, texts):
        """Requests and cache keys of ``texts`` (plus a content-free one)."""
        plan, keys = [], []
        for chunk_plan, chunk_keys in self._chunks(self._with_extra(texts)):
            plan += chunk_plan
            keys += chunk_keys
        return plan, keys, self._identity()

    def _batch_settings(self):
        if not self.use_batch_api:
            return None
        from .llm.batch import BatchSettings

        return BatchSettings(self.batch_poll_interval, wait=self.batch_wait)

    def _limiter(self):
        if self.max_requests_per_minute is None and self.max_tokens_per_minute is None:
            return None
        return llm_requests.RateLimiter(
            self.max_requests_per_minute, self.max_tokens_per_minute
        )

    def _collect(self, texts):
        """Fetch the answers of ``texts``: records by row, failures, usage."""
        self._validate_params()
        usage = llm_requests.Usage()
        usage.add(texts=len(texts))
        store = self._get_cache()
        answer = self.answer
        identity = self._identity()
        online = dict(
            get_client=self._get_client,
            store=store,
            check=lambda record: decoding.check_usable(record, answer),
            usage=usage,
            identity=identity,
            n_jobs=self.n_jobs,
            max_retries=self.max_retries,
            backoff=self.backoff,
            random_state=self.random_state,
            verbose=self.verbose,
            discard_client=self._holders()[0].discard,
            limiter=self._limiter(),
        )
        all_texts = self._with_extra(texts)
        keys, answers, failures, write_errors = [], {}, {}, []

        def merge(result):
            answers.update(result.answers)
            failures.update(result.failures)
            write_errors.extend(result.write_errors)

        settings = self._batch_settings()
        batches = None
        if settings is not None:
            from .llm.batch import BatchJob

            batches = BatchJob(
                self._get_client, store, identity, settings, usage, self.verbose
            )
        for plan, chunk_keys in self._chunks(all_texts):
            keys += chunk_keys
            requests = dict(zip(chunk_keys, plan))
            if batches is None:
                merge(fetching.fetch(requests, **online))
            else:
                answers.update(batches.submit(requests))
        if batches is not None:
            got, left_over, errors = batches.collect(online["check"])
            answers.update(got)
            write_errors.extend(errors)
            if left_over:
                # Retried online, under the same failure policy as any request.
                index = dict(zip(keys, range(len(keys))))
                again = list(dict.fromkeys(all_texts[index[k]] for k in left_over))
                for plan, chunk_keys in self._chunks(again):
                    merge(fetching.fetch(dict(zip(chunk_keys, plan)), **online))
        if write_errors:
            warnings.warn(
                f"{len(write_errors)} answer(s) could not be written to the "
                f"cache {store.path} ({write_errors[0]}); they are used in "
                "this call but a rerun will ask for them again.",
                CacheWriteWarning,
                stacklevel=4,
            )
        n = len(texts)
        return {
            "keys": keys,
            "records": [answers.get(k) for k in keys[:n]],
            "failures": {i: failures[keys[i]] for i in range(n) if keys[i] in failures},
            "extra": [answers.get(k) for k in keys[n:]],
            "extra_failures": [failures.get(k) for k in keys[n:]],
            "usage": usage,
            "cached": store is not None,
        }

    def _reference(self, collected):
        if self.answer not in building.LOGPROB_MODES:
            return None
        if self.calibration == "content_free":
            record = collected["extra"][0]
            if record is None:
                raise AnnotationError(
                    "the content-free calibration request failed: "
                    f"{collected['extra_failures'][0] or 'unknown reason'}.",
                    failures={},
                )
            return self._decoder().distribution(record)
        if self.calibration == "batch":
            return self.calibration_reference_
        return None

    def _finish(self, collected):
        """Candidate sets from collected answers, under the two policies."""
        decoded = self._decoder().decode(
            collected["records"], reference=self._reference(collected)
        )
        usage = collected["usage"]
        failures = dict(collected["failures"])
        if decoded.unknown:
            usage.add(unknown_labels=len(decoded.unknown))
            shown = sorted(set(decoded.unknown))[:5]
            warnings.warn(
                f"{len(decoded.unknown)} answer item(s) named no known label and "
                f"were dropped, e.g. {shown}.",
                UnknownLabelWarning,
                stacklevel=4,
            )
        if decoded.empty:
            usage.add(empty_answers=len(decoded.empty))
        policies.apply_empty(
            decoded.empty, decoded.candidates, failures, self.on_empty, stacklevel=5
        )
        usage.add(failures=len(failures))
        info = {
            "usage": usage.as_dict(),
            "failures": dict(sorted(failures.items())),
            "label_proba": decoded.proba,
        }
        hint = ""
        if self.answer == "json" and any("HTTP 400" in r for r in failures.values()):
            hint = (
                " If the endpoint does not support response_format, use answer='text'."
            )
        try:
            policies.apply_failures(
                decoded.candidates,
                decoded.single,
                failures,
                self.on_failure,
                cached=collected["cached"],
                hint=hint,
            )
        except AnnotationError as exc:
            exc.usage = info["usage"]
            raise
        return decoded.candidates, decoded.single, info

    def _annotate(self, texts):
        """Annotate texts already checked (by annotate or transform)."""
        import scipy.sparse as sp

        candidates, single, info = self._finish(self._collect(texts))
        return sp.csr_matrix(candidates), single, info

    # -- public API ---------------------------------------------------------------
    def annotate(self, X):
        """Request the candidate sets of ``X`` now.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        AnnotatedTexts
            ``texts``, ``candidates`` (csr 0/1, shape (n, C), columns in
            :attr:`classes_` order) and ``single`` (the teacher's top label
            index per text: the first label an answer lists, or the most
            probable one in a log-probability mode; -1 where there is none),
            with this call's ``usage``, ``failures`` and ``label_proba``. The
            fitted attributes are left as :meth:`fit` set them.

        Raises
        ------
        AnnotationError
            With ``on_failure="raise"``, when some texts failed for good.
        EndpointError
            When the endpoint refuses every request (401, 403, 404, quota).

        Examples
        --------
        In the log-probability mode the label distributions come with the
        result:

        >>> import math
        >>> from skcandist.testing import FakeLLMServer
        >>> top = {" spam": math.log(0.6), " ham": math.log(0.3), " ok": -3.0}
        >>> with FakeLLMServer(lambda r: {"content": " spam", "top_logprobs": top}
        ...                    ) as server:
        ...     annotator = CandidateAnnotator(
        ...         ["spam", "ham"], base_url=server.base_url, answer="logprobs",
        ...         proba_ratio=0.4, cache=None, verbose=0).fit()
        ...     out = annotator.annotate(["free entry to win"])
        >>> out.label_proba.round(2).tolist(), out.candidates.toarray().tolist()
        ([[0.67, 0.33]], [[1, 1]])
        """
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        candidates, single, info = self._annotate(texts)
        return AnnotatedTexts(texts, candidates, self.classes_, single, info=info)

    def transform(self, X):
        """Texts with deferred candidate sets.

        No request is sent until ``out.candidates`` (or ``out.single``) is
        read; then the whole of ``X`` is annotated at once.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        AnnotatedTexts
            Deferred; see :meth:`annotate` for its contents.

        Examples
        --------
        >>> from skcandist.testing import FakeLLMServer
        >>> with FakeLLMServer(lambda r: '["ham"]') as server:
        ...     annotator = CandidateAnnotator(["spam", "ham"], verbose=0, cache=None,
        ...                                    base_url=server.base_url).fit()
        ...     out = annotator.transform(["see you soon"])
        ...     sent_before = server.n_requests
        ...     rows = out.candidates.toarray().tolist()
        >>> sent_before, rows, server.n_requests
        (0, [[0, 1]], 1)
        """
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        return AnnotatedTexts(texts, classes=self.classes_, annotate=self._annotate)

    def fit_transform(self, X, y=None):
        """Fit, then annotate ``X`` at once (see :meth:`annotate`).

        Parameters
        ----------
        X : sequence of str
        y : None
            Ignored.

        Returns
        -------
        AnnotatedTexts
            Materialised: the requests have been sent. Its counters are also
            in :attr:`usage_`, its failures in :attr:`failures_`.
        """
        import scipy.sparse as sp

        texts, collected = self._fit(X)
        if texts is None:
            texts = check_texts(X)  # raises: there is nothing to annotate
        try:
            if collected is None:
                collected = self._collect(texts)
            candidates, single, info = self._finish(collected)
        except AnnotationError as exc:
            self.usage_ = getattr(exc, "usage", self.usage_)
            self.failures_ = dict(exc.failures)
            raise
        self.usage_ = dict(info["usage"])
        self.failures_ = dict(info["failures"])
        self.label_proba_ = info["label_proba"]
        return AnnotatedTexts(
            texts, sp.csr_matrix(candidates), self.classes_, single, info=info
        )

    def get_feature_names_out(self, input_features=None):
        """The label names, one per candidate column.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "classes_")
        return np.asarray(self.classes_, dtype=object)

    def build_requests(self, X):
        """The request bodies that annotating ``X`` would send; sends nothing.

        One per distinct text, cached or not, in the order of first
        appearance: what a dry run shows, and what a batch file would hold.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        list of dict
            ``{"url": "/v1/chat/completions" or "/v1/completions", "body":
            <the request's JSON body>, "key": <its answer-cache key>}``.

        Examples
        --------
        >>> annotator = CandidateAnnotator(["spam", "ham"], model="m", cache=None)
        >>> requests = annotator.fit().build_requests(["win cash", "win cash"])
        >>> len(requests), requests[0]["url"], requests[0]["body"]["model"]
        (1, '/v1/chat/completions', 'm')
        """
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        plan, keys, _ = self._plan(texts)
        urls = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
        unique = dict(zip(keys, plan))
        return [
            {"url": urls[r["endpoint"]], "body": dict(r["params"]), "key": k}
            for k, r in unique.items()
        ]

    def write_batch_file(self, X, path):
        """Write the requests that annotating ``X`` still needs as a batch file.

        One JSON line per uncached distinct text, in the Batch API's input
        format (``custom_id`` = the answer-cache key), for an engine run by
        hand, e.g. ``vllm run-batch -i PATH -o OUT``; read the answers back
        with :meth:`read_batch_results`. Sends nothing.

        Parameters
        ----------
        X : sequence of str
        path : str or path-like

        Returns
        -------
        int
            The number of lines written.
        """
        from .llm.batch import write_batch_file

        check_is_fitted(self, "classes_")
        return write_batch_file(self._uncached_chunks(check_texts(X)), path)

    def read_batch_results(self, path):
        """Store the answers of a batch output file in the answer cache.

        ``path`` holds Batch API output lines (what ``vllm run-batch`` or a
        downloaded batch output file holds), matched to requests by
        ``custom_id``. Usable answers go to the cache, so that annotating the
        same texts afterwards sends no request for them.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        dict
            ``stored`` (answers cached) and ``failed`` (line -> reason, for
            failed lines and unusable answers).
        """
        from .llm.batch import read_batch_results

        check_is_fitted(self, "classes_")
        store = self._get_cache()
        if store is None:
            raise InvalidInputError(
                "read_batch_results stores answers in the answer cache; set "
                "cache='auto' or a file path, not None."
            )
        answer = self.answer
        answers, failed = read_batch_results(
            path, {}, lambda r: decoding.check_usable(r, answer), store
        )
        return {"stored": len(answers), "failed": failed}

    def _uncached_chunks(self, texts):
        """Cache key -> request for the distinct texts the cache lacks, a dict
        per chunk of texts."""
        store = self._get_cache()
        seen = set()
        for plan, keys in self._chunks(self._with_extra(texts)):
            unique = {k: r for k, r in zip(keys, plan) if k not in seen}
            seen.update(unique)
            cached = store.get_many(unique) if store is not None else {}
            yield {k: r for k, r in unique.items() if k not in cached}

    def _uncached(self, texts):
        """Cache key -> request, for the distinct texts the cache lacks."""
        todo = {}
        for chunk in self._uncached_chunks(texts):
            todo.update(chunk)
        return todo

    def estimate(self, X):
        """Requests and tokens that annotating ``X`` would cost; sends nothing.

        Cached answers and repeated texts are not counted. Prompt tokens are
        approximated as characters / 4 (plus a few per chat message);
        completion tokens as one per request in the log-probability modes and
        as a short JSON list of label names otherwise.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        dict
            ``texts``, ``requests``, ``cached``, ``prompt_tokens`` and
            ``completion_tokens``.

        Examples
        --------
        >>> annotator = CandidateAnnotator(["spam", "ham"], cache=None).fit()
        >>> annotator.estimate(["win cash", "hi mum", "win cash"])["requests"]
        2
        """
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        todo = list(self._uncached(texts).values())
        n_distinct = len(set(texts))
        if self.answer in building.LOGPROB_MODES and self.calibration == "content_free":
            n_distinct += 1
        cached = n_distinct - len(todo)
        prompt_tokens = sum(building.estimated_tokens(r, 0) for r in todo)
        if self.answer in ("logprobs", "chat_logprobs"):
            per_answer = 1
        else:
            name_tokens = np.mean([len(c) / 4 + 2 for c in self.classes_])
            per_answer = int(np.ceil(4 + 2 * name_tokens))
        return {
            "texts": len(texts),
            "requests": len(todo),
            "cached": cached,
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(per_answer * len(todo)),
        }

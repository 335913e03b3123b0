"""Talking to an LLM: prompts, answer parsing, requests and the answer cache.

This sub-package knows nothing of students or estimators. Its modules are:

- :mod:`skcandist.llm.prompts`: the paper's prompt styles (``single``, ``add``,
  ``all``), user templates with checked placeholders, the raw few-shot prompt of
  the log-probability mode, and the JSON schema of structured answers;
- :mod:`skcandist.llm.parsing`: answers to candidate sets (JSON, free text,
  token log-probabilities), calibration and candidate rules;
- :mod:`skcandist.llm.retrieval`: the few-shot demonstrations of each query;
- :mod:`skcandist.llm.building`: requests, their cache keys and the endpoint's
  identity;
- :mod:`skcandist.llm.requests`: the client, one request, retries with
  backoff, concurrency with cancellation, and usage accounting;
- :mod:`skcandist.llm.fetching`: the client and cache lifecycle, and fetching
  what the cache lacks (usable answers only, the fatal-error stop, interrupts);
- :mod:`skcandist.llm.decoding`: answer records to candidate sets;
- :mod:`skcandist.llm.policies`: what empty answers and failed texts become;
- :mod:`skcandist.llm.cache`: the persistent SQLite answer cache.

Nothing here imports ``openai`` at module import time.
"""

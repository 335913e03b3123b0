"""Talking to an LLM: prompts, answer parsing, requests and the answer cache.

This sub-package knows nothing of students or estimators. Its modules are:

- :mod:`skcandist.llm.prompts`: the paper's prompt styles (``single``, ``add``,
  ``all``), user templates with checked placeholders, the raw few-shot prompt of
  the log-probability mode, and the JSON schema of structured answers;
- :mod:`skcandist.llm.parsing`: answers to candidate sets (JSON, free text,
  token log-probabilities), calibration and candidate rules;
- :mod:`skcandist.llm.requests`: the lazily built client, concurrent requests,
  retries with backoff, and usage accounting;
- :mod:`skcandist.llm.cache`: the persistent SQLite answer cache.

Nothing here imports ``openai`` at module import time.
"""

"""skcandist: LLM candidate-set annotation distilled into a small student.

The package implements CanDist (Xia et al., "Prompt Candidates, then Distill: A
Teacher-Student Framework for LLM-driven Data Annotation", ACL 2025,
arXiv:2506.03857) behind scikit-learn estimators:

- :class:`CandidateAnnotator` asks an OpenAI-compatible endpoint for the
  candidate labels of each text and returns a sparse n x C 0/1 matrix;
- :class:`CanDistClassifier` trains a student on those candidate sets with the
  paper's distribution refinery.

Importing the package is cheap: torch, skorch, sentence-transformers and openai are
only imported by the code that uses them.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "CandidateAnnotator",
    "CanDistClassifier",
    "AnnotatedTexts",
    "SkcandistError",
    "SkcandistWarning",
    "metrics",
    "datasets",
    "__version__",
]

# Public name -> private module that defines it. Resolved on first access so
# that ``import skcandist`` stays light.
_LAZY = {
    "CandidateAnnotator": "skcandist._annotator",
    "AnnotatedTexts": "skcandist._annotated",
    "CanDistClassifier": "skcandist._student",
    "SkcandistError": "skcandist.exceptions",
    "SkcandistWarning": "skcandist.exceptions",
}
_SUBMODULES = {"metrics", "datasets", "exceptions", "llm", "losses", "encoders"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"skcandist.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'skcandist' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

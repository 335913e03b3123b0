"""Helpers shared by the annotator's test files (not a test module)."""

from skcandist import CandidateAnnotator


def query_text(request):
    """The text of the query (last user message or last Text: line)."""
    if request["_endpoint"] == "chat":
        content = request["messages"][-1]["content"]
    else:
        content = request["prompt"].rsplit("Text: ", 1)[-1].rsplit("\nLabel:", 1)[0]
    return content.split("Text: ", 1)[-1]


def make_annotator(server, labels, **params):
    """An annotator on ``server`` with quick test settings (overridable)."""
    params.setdefault("verbose", 0)
    params.setdefault("retrieval", "tfidf")
    params.setdefault("backoff", 0.01)
    params.setdefault("timeout", 5.0)
    return CandidateAnnotator(labels, base_url=server.base_url, **params)


def interruptible():
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a test
    run started in the background of a non-interactive shell inherits SIGINT
    ignored, and Python would then never raise KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

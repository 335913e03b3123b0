"""Prompt templates and rendering for candidate annotation.

The chat prompts follow the CanDist paper (Xia et al., ACL 2025, Sec. 3.1): a
system message with the task, the class list with descriptions and the request
for brief answers, then few-shot demonstrations that show *single* labels, then
the query text. The three styles differ only in their instruction:

- ``single``: classify the text into one of the types;
- ``add``: the same, plus "If you are unsure about your answer, please include
  other potential choices.";
- ``all``: identify the text with all possible choices of the types.

Every style asks for a JSON list of label names. A user may give their own user
message template instead of a style name; it must hold the placeholders
``{text}`` and ``{labels}`` (``{task}`` is optional) and nothing else.

The log-probability mode uses a raw completion prompt instead (see
``../shared/LOCAL_LLM.md``): a header line, demonstrations as ``Text: ...`` /
``Label: name`` pairs, then the query and ``Label:``.
"""

import string

from ..exceptions import InvalidInputError

__all__ = [
    "PROMPT_STYLES",
    "check_template",
    "format_label_list",
    "system_message",
    "render_messages",
    "render_completion_prompt",
    "answer_schema",
]

PROMPT_STYLES = ("single", "add", "all")

_INSTRUCTIONS = {
    "single": "Classify the text into one of the following types:",
    "add": "Classify the text into one of the following types:",
    "all": "Identify the text with all possible choices of the following types:",
}
_ADD_SENTENCE = (
    "If you are unsure about your answer, please include other potential choices."
)
_FORMAT_SENTENCE = 'Answer with a JSON list of label names, e.g. ["{0}"].'
_BRIEF_SENTENCE = "Reply with brief, to-the-point answers."
_REQUIRED_PLACEHOLDERS = {"text", "labels"}
_ALLOWED_PLACEHOLDERS = {"text", "labels", "task"}


def check_template(template):
    """Check a user message template and return its placeholders.

    Parameters
    ----------
    template : str
        A ``str.format`` template holding ``{text}`` and ``{labels}`` and
        optionally ``{task}``. Literal braces are written ``{{`` and ``}}``.

    Returns
    -------
    set of str
        The placeholder names found.

    Raises
    ------
    InvalidInputError
        When the template is not a string, cannot be parsed, misses a required
        placeholder or holds an unknown one.

    Examples
    --------
    >>> sorted(check_template("Labels: {labels}\\nText: {text}"))
    ['labels', 'text']
    >>> check_template("Text: {text}")
    Traceback (most recent call last):
    ...
    skcandist.exceptions.InvalidInputError: prompt template misses the placeholder(s) {labels}; ...
    """  # noqa: E501
    if not isinstance(template, str):
        raise InvalidInputError(
            f"prompt must be one of {PROMPT_STYLES} or a template string; got "
            f"{type(template).__name__}."
        )
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise InvalidInputError(
            f"prompt template cannot be parsed ({exc}); write literal braces as "
            "'{{' and '}}'."
        ) from exc
    missing = _REQUIRED_PLACEHOLDERS - fields
    if missing:
        names = ", ".join("{" + m + "}" for m in sorted(missing))
        raise InvalidInputError(
            f"prompt template misses the placeholder(s) {names}; a template must "
            "hold {text} and {labels} (and may hold {task})."
        )
    unknown = fields - _ALLOWED_PLACEHOLDERS
    if unknown:
        raise InvalidInputError(
            f"prompt template holds unknown placeholder(s) {sorted(unknown)}; only "
            "{text}, {labels} and {task} are filled in."
        )
    return fields


def format_label_list(labels):
    """Render the class list, one ``- name: description`` line per label.

    Parameters
    ----------
    labels : dict
        Label name -> description (None or "" for no description).

    Returns
    -------
    str

    Examples
    --------
    >>> print(format_label_list({"spam": "unsolicited ads", "ham": None}))
    - spam: unsolicited ads
    - ham
    """
    lines = []
    for name, description in labels.items():
        lines.append(f"- {name}: {description}" if description else f"- {name}")
    return "\n".join(lines)


def system_message(labels, style="all", task=None, json_answer=True):
    """The system message of a paper prompt style.

    Parameters
    ----------
    labels : dict
        Label name -> description.
    style : {"single", "add", "all"} or str, default="all"
        A paper style, or a user template (then only the task and the request
        for brief JSON answers go to the system message).
    task : str, default=None
        One-line description of the task and data.
    json_answer : bool, default=True
        Ask for a JSON list of label names; False asks for one label name only
        (what the chat log-probability mode scores).

    Returns
    -------
    str

    Examples
    --------
    >>> msg = system_message({"spam": None, "ham": None}, "add", "SMS filtering.")
    >>> print(msg)
    SMS filtering.
    Classify the text into one of the following types:
    - spam
    - ham
    If you are unsure about your answer, please include other potential choices.
    Reply with brief, to-the-point answers. Answer with a JSON list of label names, e.g. ["spam"].
    """  # noqa: E501
    first = next(iter(labels))
    if json_answer:
        answer_format = _FORMAT_SENTENCE.format(first)
    else:
        answer_format = "Answer with the name of one type only."
    parts = [task.strip()] if task else []
    if style in _INSTRUCTIONS:
        parts.append(_INSTRUCTIONS[style])
        parts.append(format_label_list(labels))
        if style == "add" and json_answer:
            parts.append(_ADD_SENTENCE)
    parts.append(_BRIEF_SENTENCE + " " + answer_format)
    return "\n".join(parts)


def _query(text, style, labels, task):
    if style in _INSTRUCTIONS:
        return f"Text: {text}"
    return style.format(text=text, labels=format_label_list(labels), task=task or "")


def render_messages(
    text, labels, style="all", task=None, demonstrations=(), json_answer=True
):
    """The chat messages for one text.

    Parameters
    ----------
    text : str
        The text to annotate. It goes verbatim into the last user message; any
        instruction it holds cannot widen the label set, because answers are
        parsed against the label names only.
    labels : dict
        Label name -> description.
    style : {"single", "add", "all"} or str, default="all"
        A paper style or a checked user template (see :func:`check_template`).
    task : str, default=None
        One-line task description.
    demonstrations : sequence of (str, str), default=()
        Few-shot ``(text, label)`` pairs, shown as a user turn and a single-label
        assistant answer each.
    json_answer : bool, default=True
        Ask for (and show) JSON lists; False asks for a bare label name.

    Returns
    -------
    list of dict
        OpenAI chat messages.

    Examples
    --------
    >>> msgs = render_messages("win cash", {"spam": None, "ham": None}, "single",
    ...                        demonstrations=[("hi mum", "ham")])
    >>> [m["role"] for m in msgs]
    ['system', 'user', 'assistant', 'user']
    >>> msgs[2]["content"], msgs[3]["content"]
    ('["ham"]', 'Text: win cash')
    """
    import json

    system = system_message(labels, style, task, json_answer)
    messages = [{"role": "system", "content": system}]
    for demo_text, demo_label in demonstrations:
        messages.append(
            {"role": "user", "content": _query(demo_text, style, labels, task)}
        )
        answer = json.dumps([demo_label]) if json_answer else demo_label
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _query(text, style, labels, task)})
    return messages


def _one_line(text):
    return " ".join(str(text).split())


def render_completion_prompt(text, labels, task=None, demonstrations=()):
    """The raw few-shot prompt of the log-probability mode.

    A header line, then ``Text: ...`` / ``Label: name`` pairs, then the query
    text and ``Label:``; the model's next token is scored. Texts are folded onto
    one line so that a text cannot fake a ``Label:`` line of its own.

    Parameters
    ----------
    text : str
    labels : dict
        Label name -> description (descriptions are not shown).
    task : str, default=None
        Header line; default "Classify each text as one of: <names>."
    demonstrations : sequence of (str, str), default=()

    Returns
    -------
    str

    Examples
    --------
    >>> print(render_completion_prompt("win cash", {"spam": None, "ham": None},
    ...                                demonstrations=[("hi mum", "ham")]))
    Classify each text as one of: spam, ham.
    <BLANKLINE>
    Text: hi mum
    Label: ham
    <BLANKLINE>
    Text: win cash
    Label:
    """
    header = (
        _one_line(task)
        if task
        else ("Classify each text as one of: " + ", ".join(labels) + ".")
    )
    blocks = [header]
    for demo_text, demo_label in demonstrations:
        blocks.append(f"Text: {_one_line(demo_text)}\nLabel: {demo_label}")
    blocks.append(f"Text: {_one_line(text)}\nLabel:")
    return "\n\n".join(blocks)


def answer_schema(labels):
    """The ``response_format`` asking for a JSON list of known label names.

    OpenAI's structured outputs need an object at the top level, so the list is
    wrapped as ``{"labels": [...]}``; every item is an enum of the label names.

    Parameters
    ----------
    labels : sequence of str

    Returns
    -------
    dict

    Examples
    --------
    >>> schema = answer_schema(["spam", "ham"])
    >>> schema["type"], schema["json_schema"]["schema"]["properties"]["labels"]["items"]
    ('json_schema', {'type': 'string', 'enum': ['spam', 'ham']})
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "candidate_labels",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "labels": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(labels)},
                    }
                },
                "required": ["labels"],
                "additionalProperties": False,
            },
        },
    }

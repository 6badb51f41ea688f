"""``.ci/uv_sources.py``: CI's uv install gets the package sources pip is configured with."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "uv_sources.py"


@pytest.fixture(scope="module")
def uv_sources():
    spec = importlib.util.spec_from_file_location("uv_sources", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: what ``pip config list`` printed with a file holding an index, a two-line list of extra
#: indexes and find-links, and PIP_INDEX_URL / PIP_FIND_LINKS in the environment
CONFIG_LIST = """\
:env:.find-links='/env/wheels'
:env:.index-url='https://env.example/simple'
global.extra-index-url='\\nhttps://a.example/simple\\nhttps://b.example/simple'
global.find-links='/opt/wheels /env/wheels'
global.index-url='https://file.example/simple'
global.timeout='60'
"""


def test_the_environment_wins_and_lists_are_the_union_of_every_scope(uv_sources):
    settings = uv_sources.parse_config_list(CONFIG_LIST)
    assert settings["index-url"][0] == "https://env.example/simple"
    assert settings["extra-index-url"] == ["https://a.example/simple", "https://b.example/simple"]
    assert settings["find-links"] == ["/env/wheels", "/opt/wheels"]
    exports = uv_sources.exports_for(settings)
    assert exports == {
        "UV_INDEX_STRATEGY": "unsafe-best-match",
        "UV_DEFAULT_INDEX": "https://env.example/simple",
        "UV_INDEX": "https://a.example/simple https://b.example/simple",
        "UV_FIND_LINKS": "/env/wheels,/opt/wheels",
    }


def test_without_pip_settings_uv_keeps_its_default_index(uv_sources):
    assert uv_sources.exports_for(uv_sources.parse_config_list("")) == {
        "UV_INDEX_STRATEGY": "unsafe-best-match"
    }


def test_the_printed_exports_are_what_a_shell_sets(tmp_path):
    """The script's output, eval'd by bash, sets uv's variables to pip's settings here."""
    env = {**os.environ, "PIP_INDEX_URL": "https://env.example/simple"}
    shown = subprocess.run(
        ["bash", "-c", f'eval "$({sys.executable} {SCRIPT})" && echo "$UV_DEFAULT_INDEX"'],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    assert shown.stdout.strip() == "https://env.example/simple"

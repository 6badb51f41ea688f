"""The pytest plugin under hostile input: a usage error (exit 4) with the message, never an
INTERNALERROR (exit 3), before any model loads."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_nothing="def test_ok():\n    assert True\n")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def _usage_error(result: pytest.RunResult, message: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text[-2000:]
    assert "INTERNALERROR" not in text
    assert message in text, text[-2000:]


def test_a_class_list_that_is_not_utf8_is_a_usage_error(project):
    (project.path / "classes.txt").write_bytes(b"cat\n\xff\xfedog\n")
    result = project.runpytest_inprocess("--xai-classes=classes.txt", "-p", "no:cacheprovider")
    _usage_error(result, "not UTF-8")


@pytest.mark.parametrize(
    "env,message",
    [
        ({"XAI_CHECKS_DIST_TIMEOUT": "abc"}, "XAI_CHECKS_DIST_TIMEOUT='abc'"),
        ({"XAI_CHECKS_DIST_TIMEOUT": "-5"}, "XAI_CHECKS_DIST_TIMEOUT='-5'"),
        ({"WORLD_SIZE": "2"}, "launch with torchrun"),
    ],
)
def test_a_bad_distributed_environment_is_a_usage_error(project, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = project.runpytest_inprocess("-p", "no:cacheprovider")
    _usage_error(result, message)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--xai-input-size=40000"], "--allow-large-input"),
        (["--xai-std=1e-300,1,1", "--xai-mean=0.5,0.5,0.5"], ">= 1e-06"),
        (["--xai-control-seeds=1000000000"], "at most 100"),
        (["--xai-target=1000"], "ImageNet-1k indices are 0..999"),
    ],
)
def test_absurd_preprocessing_is_a_usage_error(project, args, message):
    result = project.runpytest_inprocess(*args, "-p", "no:cacheprovider")
    _usage_error(result, message)


EXITING_CLAIM = """

from xai_checks.claims import Claim, register_claim


class Exits(Claim):
    id = "exits"
    title = "a claim that ends the run"

    def evaluate(self, study):
        raise SystemExit(0)


register_claim(Exits)
"""


def test_a_claim_that_calls_sys_exit_fails_its_own_test_and_the_others_are_judged(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """A ``SystemExit`` from a claim's ``evaluate`` is that claim's error, named; the run's
    other claim is still judged and its test passes (a ``SystemExit`` passing through a
    fixture leaves pytest's fixtures half set up, and the next test then fails inside pytest)."""
    from test_plugin import CONFTEST

    pytester.makeconftest(CONFTEST + EXITING_CLAIM)
    pytester.makepyfile(  # a module name no test module of this suite has: the run is in-process
        test_exiting_claim=(
            "import pytest\n\n"
            '@pytest.mark.claim("exits")\n'
            "def test_exits(claim_verdict):\n    pass\n\n"
            '@pytest.mark.claim("native-captum-agreement")\n'
            "def test_agree(claim_verdict):\n    pass\n"
        )
    )
    # the run is in this process: its conftest's claim must not outlive the test
    monkeypatch.setattr("xai_checks.claims.registry._FROM_CODE", {})
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--xai-study-cache=none", "--xai-limit=8"
    )
    text = result.stdout.str()
    assert "INTERNALERROR" not in text
    result.assert_outcomes(passed=1, errors=1)
    assert "claim 'exits'" in text and "called sys.exit(0)" in text, text[-3000:]

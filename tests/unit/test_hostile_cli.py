"""The CLI under hostile or careless input: every case is exit 2 with a message (a usage
error) or exit 1 (a run that judged nothing), never a traceback and never exit 0.

A tiny CNN (ImageNet's 1000 outputs, so the embedded photos' labels fit) stands in for the
user's model; every failure here is found before a photo is decoded.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from xai_checks import cli
from xai_checks.cli import main

#: the user's file: a tiny CNN and transforms, good and broken
USER_FILE = """
import os, signal, sys
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000),
    )


def on_meta():
    with torch.device("meta"):
        return tiny()


def exits():
    sys.exit(0)


def interrupts():
    raise KeyboardInterrupt


def real_sigint():
    os.kill(os.getpid(), signal.SIGINT)
    return tiny()


def gives_a_string():
    return lambda image: "a string"


def not_callable():
    return 5


def raises():
    def transform(image):
        raise RuntimeError("boom")
    return transform


def one_channel():
    return lambda image: torch.zeros(1, 32, 32)
"""


@pytest.fixture
def user(tmp_path: Path) -> Path:
    path = tmp_path / "user.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


def _check(user: Path, *args: str, model: str = "tiny") -> list[str]:
    return [
        "check", "--model", f"{user}:{model}", "--data", "embedded", "--limit", "4",
        "--input-size", "32", "--phases", "ratio", "--control", "none", "--quiet", *args,
    ]  # fmt: skip


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    "transform,message",
    [
        ("gives_a_string", "returned str, not a torch.Tensor"),
        ("not_callable", "did not return a callable"),
        ("raises", "raised RuntimeError on a photo: boom"),
        ("one_channel", "gives 1 channel(s) but the model takes 3"),
    ],
)
def test_every_transform_failure_is_exit_2(user, transform, message, capsys):
    code, err = _run(_check(user, "--transform", f"{user}:{transform}"), capsys)
    assert code == 2 and message in err, err


def test_mean_and_std_for_another_channel_count_is_exit_2(user, capsys):
    args = _check(user, "--mean", "0.5,0.5", "--std", "0.5,0.5")
    code, err = _run(args, capsys)
    assert code == 2 and "give 2 values but the model takes 3 input channels" in err, err


@pytest.mark.parametrize("size", ["40000", "1e20", "100000000000000000000"])
def test_an_absurd_input_size_is_exit_2_before_the_model_loads(user, size, capsys):
    try:
        code = main(_check(user, "--input-size", size))
    except SystemExit as exc:  # argparse's own usage error (not a whole number)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--allow-large-input" in err or "not a whole number" in err, err


def test_allow_large_input_lifts_the_bound(user, monkeypatch):
    from xai_checks.options import OptionError, cli_values, preflight

    def values(*extra: str) -> dict[str, object]:
        return cli_values(cli._parser().parse_args(_check(user, "--input-size", "5000", *extra)))

    with pytest.raises(OptionError, match="above 4096"):
        preflight(values(), front="cli", command="check")
    preflight(values("--allow-large-input"), front="cli", command="check")


def test_a_std_that_float32_divides_by_zero_is_exit_2(user, capsys):
    with pytest.raises(SystemExit) as info:
        main(_check(user, "--mean", "0.5,0.5,0.5", "--std", "1e-300,1,1"))
    assert info.value.code == 2
    assert ">= 1e-06" in capsys.readouterr().err


def test_a_model_on_the_meta_device_is_exit_2(user, capsys):
    code, err = _run(_check(user, model="on_meta"), capsys)
    assert code == 2 and "meta device" in err, err


def test_a_class_list_that_is_not_utf8_is_exit_2(user, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"cat\n\xff\xfedog\n")
    code, err = _run(_check(user, "--classes", str(classes)), capsys)
    assert code == 2 and "not UTF-8" in err, err


@pytest.mark.parametrize(
    "env,named",
    [
        ({"XAI_CHECKS_DIST_TIMEOUT": "abc"}, "XAI_CHECKS_DIST_TIMEOUT"),
        ({"XAI_CHECKS_DIST_TIMEOUT": "-5"}, "XAI_CHECKS_DIST_TIMEOUT"),
        ({"XAI_CHECKS_DIST_TIMEOUT": "inf"}, "XAI_CHECKS_DIST_TIMEOUT"),
        ({"WORLD_SIZE": "2"}, "MASTER_ADDR"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "5",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "x",
                "MASTER_PORT": "1",
            },
            "RANK",
        ),
    ],
)
def test_a_bad_distributed_environment_is_exit_2_naming_the_variable(
    user, env, named, monkeypatch, capsys
):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = _run(_check(user), capsys)
    assert code == 2 and named in err, err


@pytest.mark.parametrize("factory", ["exits", "interrupts"])
def test_user_code_that_ends_the_run_is_exit_1_never_0(user, factory, capsys):
    code, err = _run(_check(user, model=factory), capsys)
    assert code == 1, err
    assert "nothing was judged" in err


def test_a_real_sigint_is_exit_130(user, capsys):
    previous = signal.getsignal(signal.SIGINT)
    code, err = _run(_check(user, model="real_sigint"), capsys)
    assert code == 130 and "interrupted" in err, err
    assert signal.getsignal(signal.SIGINT) is previous


def test_check_with_no_verdict_is_exit_1(monkeypatch, capsys):
    study = SimpleNamespace(
        photoset={"name": "embedded", "n_used": 0, "n_skipped": 0},
        timings={},
        runs={},
        skipped=[],
    )
    monkeypatch.setattr(cli, "_run", lambda args, device, shard: (study, [], None))
    code = main(["check", "--data", "embedded", "--quiet"])
    assert code == 1
    assert "no claim was judged" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["/dev/zero", "huge"])
def test_a_class_list_that_never_ends_is_refused_unread(tmp_path, source):
    from xai_checks.data.classes import MAX_CLASS_LIST_BYTES, ClassListError, read_class_list

    path = Path(source)
    if source == "huge":
        path = tmp_path / "classes.txt"
        with path.open("wb") as handle:
            handle.truncate(MAX_CLASS_LIST_BYTES + 1)
    with pytest.raises(ClassListError):
        read_class_list(path)


def test_skip_lines_escape_control_characters_in_file_names(capsys):
    study = SimpleNamespace(
        photoset={"name": "p", "n_used": 1, "n_skipped": 1},
        timings={},
        runs={},
        skipped=[{"file": "evil\x1b[2J.jpg", "reason": "corrupt\rOK"}],
    )
    cli._print_table(study, [])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "evil\\x1b[2J.jpg" in out


@pytest.mark.parametrize("seeds", ["101", "1000000000"])
def test_control_seeds_past_the_bound_is_exit_2_before_the_model_loads(user, seeds, capsys):
    with pytest.raises(SystemExit) as info:
        main(_check(user, "--control-seeds", seeds))
    assert info.value.code == 2
    assert "at most 100" in capsys.readouterr().err


def test_a_target_of_a_digit_int_refuses_names_the_class_list(user, capsys):
    """'²' passes ``str.isdigit`` but is no number ``int`` reads: it is a class name, and no
    class of ImageNet-1k, not an argparse 'invalid value' without the reason."""
    code, err = _run(_check(user, "--target", "²"), capsys)
    assert code == 2 and "is not an ImageNet-1k class name" in err, err


def test_a_target_index_past_imagenet_without_a_class_list_is_exit_2_up_front(
    user, monkeypatch, capsys
):
    """Without --classes the labels are ImageNet-1k's: index 1000 can never be a class."""
    import xai_checks.models

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before --target was checked")

    monkeypatch.setattr(xai_checks.models, "load_model_spec", refuse)
    code, err = _run(_check(user, "--target", "1000"), capsys)
    assert code == 2 and "ImageNet-1k indices are 0..999" in err, err

"""Option values reach the study through the option rows alone: every row says where its value
lands in StudyConfig (or that it does not), and the CLI and the plugin make equal configs from
equal values."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from xai_checks.data.classes import Preprocess
from xai_checks.options import (
    OPTIONS,
    UNDECLARED,
    OptionError,
    add_cli_options,
    add_plugin_options,
    cli_values,
    option,
    plugin_values,
    study_config,
)
from xai_checks.session import Settings, settings_from_values
from xai_checks.study import StudyConfig

#: one value for each option both front ends have that reaches the study, as typed
SHARED_ARGS = {
    "method": "layercam",
    "channels-last": None,
    "tf32": None,
    "layers": "layer2,layer3",
    "batch-size": "3",
    "seed": "7",
    "gridpg-targets": "top5",
    "input-size": "192",
    "mean": "0.4,0.5,0.6",
    "std": "0.2,0.3,0.25",
}


def _argv(prefix: str) -> list[str]:
    argv: list[str] = []
    for name, value in SHARED_ARGS.items():
        argv.append(f"--{prefix}{name}")
        if value is not None:
            argv.append(value)
    return argv


class _PluginConfig:
    """The part of ``pytest.Config`` that :func:`plugin_values` reads, over plain argparse."""

    def __init__(self, argv: list[str]) -> None:
        parser = argparse.ArgumentParser()
        # pytest's ``addoption`` takes argparse's keywords
        add_plugin_options(SimpleNamespace(addoption=parser.add_argument))
        self.namespace = parser.parse_args(argv)

    def getoption(self, dest: str) -> Any:
        return getattr(self.namespace, dest)


def _cli_config(argv: list[str]) -> StudyConfig:
    parser = argparse.ArgumentParser()
    add_cli_options(parser, "study")
    return study_config(cli_values(parser.parse_args(argv)))


def _plugin_settings(argv: list[str]) -> Settings:
    return settings_from_values(plugin_values(_PluginConfig(argv)))


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_row_says_where_its_value_lands_in_the_study():
    """A new option must name its StudyConfig field, or declare ``study=None``."""
    undeclared = [row.name for row in OPTIONS if row.study is UNDECLARED]
    assert not undeclared, f"rows without study=: {undeclared}"
    nested = {"preprocess": _field_names(Preprocess)}
    for row in OPTIONS:
        if row.study is None:
            continue
        head, _, rest = row.study.partition(".")
        assert head in _field_names(StudyConfig), f"{row.name}: no StudyConfig.{head}"
        if head in nested:
            assert rest in nested[head], f"{row.name}: no {head}.{rest}"


def test_every_plugin_setting_is_an_option_row():
    """Settings' fields are the rows of their names, so the table defines them."""
    rows = {row.name for row in OPTIONS if row.plugin}
    renamed = {"labels": "label", "json_path": "json"}
    for name in _field_names(Settings) - {"values", "data_note"}:
        assert renamed.get(name, name) in rows, f"Settings.{name} has no plugin option row"


def test_cli_and_plugin_make_equal_configs_from_equal_values():
    cli = _cli_config(_argv(""))
    settings = _plugin_settings(_argv("xai-"))
    plugin = settings.study_config(layers=settings.layers)
    assert cli == plugin
    # and the values did arrive (an option that reached neither would also compare equal)
    assert cli.method == "layercam" and cli.channels_last and cli.tf32
    assert cli.layers == ("layer2", "layer3") and cli.batch_size == 3 and cli.seed == 7
    assert cli.gridpg_targets == "top5"
    assert cli.preprocess == Preprocess(input_size=192, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    assert cli != _cli_config([])


def test_defaults_match_the_study_defaults():
    """No option: the CLI's config is StudyConfig's own defaults (the ResNet-50's layers)."""
    assert _cli_config([]) == StudyConfig()
    settings = _plugin_settings([])
    assert settings.study_config(layers=("layer1", "layer2", "layer3", "layer4")) == StudyConfig()


def test_nested_rows_reach_their_parts():
    config = _cli_config(["--faithfulness-photos", "40", "--input-size", "5000",
                          "--allow-large-input", "--mosaics", "12"])  # fmt: skip
    assert config.phase_options == {"faithfulness": {"images": 40}}
    assert config.preprocess.input_size == 5000 and config.preprocess.allow_large
    assert config.gridpg_mosaics == 12


def test_a_users_model_gets_its_layers_picked():
    spec = Path(__file__)
    config = _cli_config(["--model", f"{spec}:factory"])
    assert config.layers == ()
    settings = _plugin_settings([])
    assert settings.study_config(layers=None).layers == ()


@pytest.mark.parametrize(
    ("target", "expected"), [("true", "true"), ("predicted", "predicted"), ("104", 104)]
)
def test_target_values(target, expected):
    assert _cli_config(["--target", target]).target == expected


def test_target_by_class_name_resolves_against_the_photo_sets_classes():
    from xai_checks.data.classes import ClassList

    assert _cli_config(["--target", "wallaby"]).target == 104  # ImageNet-1k without a list
    parser = argparse.ArgumentParser()
    add_cli_options(parser, "study")
    values = cli_values(parser.parse_args(["--target", "dog"]))
    classes = ClassList(("cat", "dog"), source="pets.txt")
    assert study_config(values, classes=classes).target == 1
    settings = _plugin_settings([])
    assert (
        settings.study_config(layers=None, overrides={"target": "dog"}, classes=classes).target == 1
    )
    with pytest.raises(OptionError, match=r"'wolf'.*pets\.txt"):
        study_config({**values, "target": "wolf"}, classes=classes)


def test_the_study_rejects_a_value_as_an_option_error():
    with pytest.raises(OptionError, match="input_size"):
        _cli_config(["--input-size", "5000"])


def test_plugin_overrides_are_study_options_only():
    settings = _plugin_settings([])
    config = settings.study_config(layers=None, overrides={"method": "hirescam"})
    assert config.method == "hirescam"
    with pytest.raises(OptionError, match="'memory_format': not a study option"):
        settings.study_config(layers=None, overrides={"memory_format": "channels_last"})


def test_the_preprocess_key_of_a_baseline_comes_from_the_rows():
    settings = _plugin_settings(["--xai-input-size", "192", "--xai-allow-large-input"])
    assert settings.preprocess == {"input_size": 192, "allow_large": True}
    assert settings.key()["preprocess"] == {"input_size": 192, "allow_large": True}
    assert "preprocess" not in _plugin_settings([]).key()


def test_phases_of_the_claims_fill_in_unless_named():
    values = {"phases": None}
    assert study_config(values, phases=("ratio",)).phases == ("ratio",)
    assert study_config({"phases": ["sanity"]}, phases=("ratio",)).phases == ("sanity",)
    assert option("phases").study == "phases"

"""The one entry-point loader behind the claim, phase and CAM method registries: built-ins
first, then other packages by name; wrong types, wrong names and broken distributions are
clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from xai_checks._registry import entry_points_of, load_registry

GROUP = "xai_checks_test.widgets"

WIDGETS = """
class Widget:
    name = "base"


class Alpha(Widget):
    name = "alpha"


class Zeta(Widget):
    name = "zeta"


ZETA = Zeta()
NOT_A_WIDGET = 3
"""


class Error(TypeError):
    pass


@pytest.fixture
def distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a distribution named ``acme-widgets`` on sys.path with the given entry points."""

    def install(lines: str, module: str = WIDGETS) -> type:
        (tmp_path / "acme_widgets.py").write_text(module)
        info = tmp_path / "acme_widgets-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-widgets\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
        monkeypatch.syspath_prepend(str(tmp_path))
        import importlib

        return importlib.import_module("acme_widgets").Widget

    yield install
    import sys

    sys.modules.pop("acme_widgets", None)


def _load(base: type, **kwargs):
    return load_registry(GROUP, base=base, kind="widget", error=Error, **kwargs)


def test_built_ins_first_then_others_by_name(distribution):
    widget = distribution("zeta = acme_widgets:ZETA\nalpha = acme_widgets:Alpha\n")
    # a built-in missing from the metadata is loaded from its target, with a warning
    with pytest.warns(RuntimeWarning, match=r"\['base'\]"):
        loaded = _load(widget, builtins={"base": "acme_widgets:Widget"})
    assert list(loaded) == ["base", "alpha", "zeta"]
    assert all(isinstance(w, widget) for w in loaded.values())  # a class is instantiated


def test_a_class_is_refused_where_only_instances_are_entries(distribution):
    widget = distribution("alpha = acme_widgets:Alpha\n")
    with pytest.raises(Error, match=r"not a Widget$"):
        _load(widget, builtins={}, classes=False)


def test_an_entry_of_another_type_is_refused(distribution):
    widget = distribution("three = acme_widgets:NOT_A_WIDGET\n")
    with pytest.raises(Error, match="gives 3, not a Widget subclass or instance"):
        _load(widget, builtins={})


def test_the_entry_point_name_must_be_the_entrys_own(distribution):
    widget = distribution("beta = acme_widgets:Alpha\n")
    with pytest.raises(Error, match=r"'beta'.*must equal the widget's name"):
        _load(widget, builtins={})


def test_a_broken_distribution_is_named(distribution):
    widget = distribution("gamma = acme_widgets_missing:Gamma\n")
    with pytest.raises(
        Error, match=r"'acme-widgets' failed to load: ModuleNotFoundError.*uninstall"
    ):
        _load(widget, builtins={})


def test_two_targets_for_one_name_are_refused(distribution, tmp_path):
    distribution("alpha = acme_widgets:Alpha\n")
    other = tmp_path / "other_widgets-0.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-widgets\nVersion: 0.1\n")
    (other / "entry_points.txt").write_text(f"[{GROUP}]\nalpha = other_widgets:Alpha\n")
    with pytest.raises(Error, match="two packages register the widget 'alpha'"):
        entry_points_of(GROUP, kind="widget", error=Error)

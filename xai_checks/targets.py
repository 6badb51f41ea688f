"""The class a study explains: ``true`` (each photo's label), ``predicted`` (the model's top
class) or one class for every photo, by index or by name.

One parser for both front ends: the ``target`` option row (``--target`` in the CLI,
``--xai-target`` in the pytest plugin) parses with :func:`target_choice`, and both resolve a
class name against the photo set's class list with :func:`resolve_target`.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

__all__ = ["Target", "TargetError", "check_target", "resolve_target", "target_choice"]

#: what :class:`xai_checks.study.StudyConfig` takes as ``target``
Target = Literal["true", "predicted"] | int


class TargetError(ValueError):
    """A target class that the photo set's class list does not name."""


def target_choice(text: str) -> str | int:
    """``true``, ``predicted``, a class index (an int) or a class name (left for
    :func:`resolve_target`, which knows the class list)."""
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError(
            "expected true, predicted, a class index or a class name; got an empty value"
        )
    if value in ("true", "predicted"):
        return value
    if value.isdigit():
        return int(value)
    if value.startswith("-") and value[1:].isdigit():
        raise argparse.ArgumentTypeError(f"a class index is >= 0, not {value}")
    return value


def resolve_target(value: str | int, photos: Any) -> Target:
    """The target as a study takes it: a class name becomes its index in ``photos``'s class
    list (ImageNet-1k's names when the photo set has none). :class:`TargetError` names the
    class list when the name is not in it, or the index is past its end."""
    choice = target_choice(value) if isinstance(value, str) else value
    if choice == "true":
        return "true"
    if choice == "predicted":
        return "predicted"
    classes = getattr(photos, "classes", None)
    if isinstance(choice, int):
        if classes is not None and choice >= len(classes):
            raise TargetError(
                f"class index {choice} is past the end of {classes.source} ({len(classes)} classes)"
            )
        return choice
    if classes is not None:
        index = classes.index(choice)
        if index is None:
            raise TargetError(
                f"{choice!r} is not 'true', 'predicted', a class index or a class of "
                f"{classes.source}"
            )
        return index
    from xai_checks.data.labels import LabelError, resolve_label

    try:
        return resolve_label(choice)
    except LabelError as exc:
        raise TargetError(str(exc)) from None


def check_target(value: str | int, *, classes_file: str | None) -> None:
    """:class:`TargetError` unless ``value`` names a class of ``classes_file`` (ImageNet-1k's
    when ``None``). Reads only the class list: run before any model or photo is loaded."""
    if value in ("true", "predicted"):
        return
    classes = None
    if classes_file is not None:
        from xai_checks.data.classes import ClassListError, read_class_list

        try:
            classes = read_class_list(classes_file)
        except ClassListError:
            return  # the --classes check reports it
    resolve_target(value, _WithClasses(classes))


class _WithClasses:
    """The one attribute :func:`resolve_target` reads from a photo set."""

    def __init__(self, classes: Any) -> None:
        self.classes = classes

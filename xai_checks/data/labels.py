"""ImageNet-1k labels: names, WordNet ids (wnids) and indices, and resolving one from another.

The table (``imagenet_classes.tsv``) is the standard ImageNet-1k order (index = position of the
wnid in sorted order) with torchvision's category names. ``imagenet_synonyms.tsv`` adds the
WordNet lemmas of each synset (``'wallaby, brush kangaroo'``), so that common synonyms resolve.

Name resolution, for a string that is neither an index nor a wnid:

1. Names are compared after normalising case, underscores (``great_white_shark``) and spaces.
2. *Primary* names are searched first: torchvision's name and the WordNet head word (the first
   lemma; older torchvision releases and Keras used it, so ``'crane'`` names both the bird, 134,
   and the machine, 517). If that finds nothing, the other WordNet lemmas are searched.
3. One class found: that is the answer. Several: a name spelled with exactly the same letter case
   as one class's own name wins (``'cardigan'`` is the sweater, 474; ``'Cardigan'`` the corgi, 264);
   otherwise :class:`AmbiguousLabelError` lists the candidates to pick from by wnid or index.
"""

from __future__ import annotations

import csv
import difflib
import functools
import operator
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import SupportsIndex

__all__ = [
    "NUM_CLASSES",
    "AmbiguousLabelError",
    "LabelError",
    "UnknownLabelError",
    "class_name",
    "class_names",
    "class_synonyms",
    "class_wnid",
    "class_wnids",
    "describe_class",
    "is_wnid",
    "resolve_label",
    "tinyimagenet200_wnids",
    "wnid_to_index",
]

NUM_CLASSES = 1000
_WNID_RE = re.compile(r"n\d{8}")
_INDEX_RE = re.compile(r"[+]?\d+")


class LabelError(ValueError):
    """A label that does not name exactly one ImageNet-1k class."""


class UnknownLabelError(LabelError):
    """No ImageNet-1k class has this name, wnid or index; ``suggestions`` holds close names."""

    def __init__(self, message: str, *, label: object = None, suggestions: tuple[str, ...] = ()):
        super().__init__(message)
        self.label = label
        self.suggestions = suggestions


class AmbiguousLabelError(LabelError):
    """A name shared by several classes; ``candidates`` holds their indices."""

    def __init__(self, message: str, *, label: object = None, candidates: tuple[int, ...] = ()):
        super().__init__(message)
        self.label = label
        self.candidates = candidates


@dataclass(frozen=True)
class _Table:
    wnids: tuple[str, ...]
    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    by_wnid: dict[str, int]
    #: normalised (case-folded) name -> {index: {spellings with case kept}}
    primary: dict[str, dict[int, set[str]]]
    secondary: dict[str, dict[int, set[str]]]


def _read_tsv(name: str) -> list[dict[str, str]]:
    text = resources.files("xai_checks.data").joinpath(name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


def _spaced(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("_", " ")
    return " ".join(text.split())


def _fold(text: str) -> str:
    return _spaced(text).casefold()


def _add(table: dict[str, dict[int, set[str]]], name: str, index: int) -> None:
    table.setdefault(_fold(name), {}).setdefault(index, set()).add(_spaced(name))


@functools.cache
def _table() -> _Table:
    rows = _read_tsv("imagenet_classes.tsv")
    wnids = tuple(row["wnid"] for row in rows)
    names = tuple(row["name"] for row in rows)
    if len(rows) != NUM_CLASSES or [int(row["index"]) for row in rows] != list(range(NUM_CLASSES)):
        raise RuntimeError("imagenet_classes.tsv is damaged: expected indices 0..999 in order")
    if list(wnids) != sorted(wnids):
        raise RuntimeError("imagenet_classes.tsv is damaged: wnids are not in sorted order")
    syn_rows = {row["wnid"]: row["synonyms"] for row in _read_tsv("imagenet_synonyms.tsv")}
    synonyms = tuple(
        tuple(s.strip() for s in syn_rows.get(wnid, "").split(",") if s.strip()) for wnid in wnids
    )
    primary: dict[str, dict[int, set[str]]] = {}
    secondary: dict[str, dict[int, set[str]]] = {}
    for index, (name, syns) in enumerate(zip(names, synonyms, strict=True)):
        _add(primary, name, index)
        if syns:
            _add(primary, syns[0], index)
        for syn in syns[1:]:
            _add(secondary, syn, index)
    return _Table(
        wnids=wnids,
        names=names,
        synonyms=synonyms,
        by_wnid={wnid: i for i, wnid in enumerate(wnids)},
        primary=primary,
        secondary=secondary,
    )


def is_wnid(text: str) -> bool:
    """Whether ``text`` has the form of a WordNet noun id (``n`` and eight digits)."""
    return bool(_WNID_RE.fullmatch(text))


def _check_index(index: SupportsIndex) -> int:
    if isinstance(index, bool):
        raise TypeError("a class index must be an int, not a bool")
    value = operator.index(index)
    if not 0 <= value < NUM_CLASSES:
        raise UnknownLabelError(
            f"class index {value} is out of range: ImageNet-1k indices are 0..{NUM_CLASSES - 1}",
            label=index,
        )
    return value


def class_name(index: SupportsIndex) -> str:
    """torchvision's name of class ``index`` (``class_name(104) == 'wallaby'``)."""
    return _table().names[_check_index(index)]


def class_wnid(index: SupportsIndex) -> str:
    """The WordNet id of class ``index`` (``class_wnid(104) == 'n01877812'``)."""
    return _table().wnids[_check_index(index)]


def class_synonyms(index: SupportsIndex) -> tuple[str, ...]:
    """The WordNet lemmas of class ``index``, head word first."""
    return _table().synonyms[_check_index(index)]


def class_names() -> tuple[str, ...]:
    """All 1000 torchvision names, in index order."""
    return _table().names


def class_wnids() -> tuple[str, ...]:
    """All 1000 wnids, in index order (sorted)."""
    return _table().wnids


def describe_class(index: SupportsIndex) -> str:
    """``"'wallaby' (104, n01877812)"``: a class as error messages show it."""
    i = _check_index(index)
    return f"{class_name(i)!r} ({i}, {class_wnid(i)})"


def _wnid_suggestions(wnid: str) -> tuple[str, ...]:
    close = difflib.get_close_matches(wnid, _table().wnids, n=3, cutoff=0.8)
    return tuple(describe_class(_table().by_wnid[w]) for w in close)


def wnid_to_index(wnid: str) -> int:
    """The ImageNet-1k index of ``wnid``; :class:`UnknownLabelError` if it is not one."""
    table = _table()
    key = wnid.strip()
    if key in table.by_wnid:
        return table.by_wnid[key]
    suggestions = _wnid_suggestions(key) if is_wnid(key) else ()
    hint = f"; close: {', '.join(suggestions)}" if suggestions else ""
    raise UnknownLabelError(
        f"{wnid!r} is not the wnid of an ImageNet-1k class{hint}",
        label=wnid,
        suggestions=suggestions,
    )


def _pick(table: dict[str, dict[int, set[str]]], label: str) -> dict[int, set[str]]:
    return table.get(_fold(label), {})


def _resolve_name(label: str) -> int:
    table = _table()
    for tier in (table.primary, table.secondary):
        found = _pick(tier, label)
        if len(found) == 1:
            return next(iter(found))
        if len(found) > 1:
            spelled = _spaced(label)
            exact = [i for i, spellings in found.items() if spelled in spellings]
            if len(exact) == 1:
                return exact[0]
            choices = "; ".join(
                f"{class_wnid(i)} or {i} for {class_name(i)!r}" for i in sorted(found)
            )
            raise AmbiguousLabelError(
                f"the name {label!r} fits {len(found)} ImageNet-1k classes; pass a wnid or an "
                f"index instead: {choices}",
                label=label,
                candidates=tuple(sorted(found)),
            )
    pool = {**table.secondary, **table.primary}
    close = difflib.get_close_matches(_fold(label), list(pool), n=5, cutoff=0.6)
    seen: list[str] = []
    for key in close:
        for i in sorted(pool[key]):
            text = describe_class(i)
            if text not in seen:
                seen.append(text)
    hint = f"; did you mean {', '.join(seen)}?" if seen else ""
    raise UnknownLabelError(
        f"{label!r} is not an ImageNet-1k class name, wnid or index{hint}",
        label=label,
        suggestions=tuple(seen),
    )


def resolve_label(label: str | SupportsIndex) -> int:
    """The ImageNet-1k index named by ``label``: a class name, a wnid or an index.

    ``resolve_label('wallaby') == resolve_label('n01877812') == resolve_label('104') == 104``.
    Names are case-insensitive and may use underscores; WordNet synonyms work too
    (``'brush kangaroo'``). Raises :class:`UnknownLabelError` (with close names) or
    :class:`AmbiguousLabelError` (with the classes to choose from); both are ``ValueError``.
    """
    if isinstance(label, str):
        text = label.strip()
        if not text:
            raise UnknownLabelError("an empty string is not a label", label=label)
        if _INDEX_RE.fullmatch(text):
            return _check_index(int(text))
        if is_wnid(text):
            return wnid_to_index(text)
        return _resolve_name(text)
    if isinstance(label, bool):
        raise TypeError("a label must be a name, a wnid or an int index, not a bool")
    try:
        return _check_index(label)
    except TypeError:
        raise TypeError(
            f"a label must be a name, a wnid or an int index, not {type(label).__name__}"
        ) from None


@functools.cache
def tinyimagenet200_wnids() -> tuple[str, ...]:
    """The 200 wnids of Stanford's TinyImageNet-200, in its ``wnids.txt`` order."""
    return tuple(row["wnid"] for row in _read_tsv("tinyimagenet200_wnids.tsv"))

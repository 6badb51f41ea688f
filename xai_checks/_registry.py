"""Loading a registry from an entry-point group: one helper for the claims, the phases and the
CAM methods.

Each registry names its group, the type its entries must have, and its built-ins (name ->
``module:attribute``, in the order tables show them). The built-ins come first; other packages'
entries follow by name, so the installer's order never changes a table. An entry point's name
must equal the entry's own name, and an entry point that fails to load names its distribution,
so the user knows which package to fix or uninstall. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

__all__ = ["entry_points_of", "load_registry"]

T = TypeVar("T")


def entry_points_of(
    group: str, *, kind: str, error: type[Exception] = TypeError
) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name, without loading any; two distributions that give
    one name different targets raise ``error``."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise error(
                f"two packages register the {kind} {ep.name!r}: {seen.value} and {ep.value}"
            )
        found[ep.name] = ep
    return found


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"the distribution {dist.name!r}" if dist is not None else "an installed distribution"


def _load_target(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_registry(
    group: str,
    *,
    base: type[T],
    builtins: Mapping[str, str],
    kind: str,
    name_attr: str = "name",
    classes: bool = True,
    error: type[Exception] = TypeError,
    found: Mapping[str, EntryPoint] | None = None,
) -> dict[str, T]:
    """``{name: entry}`` of ``group``: the ``builtins`` first, in their order, then the other
    entry points by name.

    Each entry point must give an instance of ``base`` (or, with ``classes``, a subclass,
    instantiated without arguments) whose ``name_attr`` equals the entry point's name. A
    built-in missing from the installed metadata (an uninstalled checkout) is loaded from its
    target with a warning. A third-party entry point that fails to import raises ``error``
    naming its distribution. ``found``: the group's entry points, if already read.
    """
    found = dict(found if found is not None else entry_points_of(group, kind=kind, error=error))
    missing = [name for name in builtins if name not in found]
    if missing:
        warnings.warn(
            f"the built-in {kind}s {missing} are not registered as entry points of {group!r} "
            "(is xai-checks installed? `pip install -e .`); loading them directly",
            RuntimeWarning,
            stacklevel=4,
        )

    def entry(name: str, obj: object, where: str) -> T:
        if classes and isinstance(obj, type) and issubclass(obj, base):
            obj = obj()
        if not isinstance(obj, base):
            wanted = f"a {base.__name__} subclass or instance" if classes else f"a {base.__name__}"
            raise error(f"entry point {name!r} ({where}) gives {obj!r}, not {wanted}")
        own = getattr(obj, name_attr)
        if own != name:
            raise error(
                f"entry point {name!r} ({where}) gives the {kind} {own!r}; the entry-point name "
                f"must equal the {kind.split()[-1]}'s {name_attr}"
            )
        return obj

    out: dict[str, T] = {}
    for name, target in builtins.items():
        ep = found.pop(name, None)
        if ep is None:
            out[name] = entry(name, _load_target(target), target)
        else:
            out[name] = entry(name, ep.load(), ep.value)
    for name in sorted(found):
        ep = found[name]
        try:
            obj = ep.load()
        except Exception as exc:
            raise error(
                f"entry point {name!r} ({ep.value}) of {_distribution(ep)} failed to load: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall that package"
            ) from exc
        out[name] = entry(name, obj, ep.value)
    return out

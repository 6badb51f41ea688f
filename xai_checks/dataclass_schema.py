"""JSON Schema from a dataclass: the result types are defined once, as dataclasses, and the
parts of ``results.schema.json`` they describe are generated from them (a test keeps the
committed file equal to the generated parts).

Written by hand rather than with pydantic: the result types are plain dataclasses, the field
types they use are few (``str``, ``int``, ``float``, ``bool``, a ``StrEnum``, each optionally
``| None``), and the output must read like the rest of the hand-kept schema (``number_or_null``
and ``["string", "null"]`` rather than ``anyOf``).

A field's ``metadata`` may add ``description`` and ``minimum``. Fields without a default are
``required``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

__all__ = ["dataclass_schema"]

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
#: the shared definition every optional number refers to (``results.schema.json``'s ``$defs``)
NUMBER_OR_NULL = {"$ref": "#/$defs/number_or_null"}


def _field_schema(annotation: Any) -> dict[str, Any]:
    args = typing.get_args(annotation)
    optional = (
        typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    )
    base = next(a for a in args if a is not type(None)) if optional else annotation
    if optional and len(args) != 2:
        raise TypeError(f"only X | None unions are supported, not {annotation}")
    if isinstance(base, type) and issubclass(base, Enum):
        values: list[Any] = [m.value for m in base]
        return {"enum": [*values, None] if optional else values}
    if base not in _JSON_TYPES:
        raise TypeError(f"no JSON Schema type for {annotation}")
    if base is float and optional:
        return dict(NUMBER_OR_NULL)
    name = _JSON_TYPES[base]
    return {"type": [name, "null"] if optional else name}


def dataclass_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of one instance of dataclass ``cls`` written by ``dataclasses.asdict``:
    an object with one property per field; its docstring's first paragraph is the
    description."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop = _field_schema(hints[f.name])
        for key in ("description", "minimum"):
            if key in f.metadata:
                prop[key] = f.metadata[key]
        properties[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object"}
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc:
        schema["description"] = " ".join(doc.split())
    schema["required"] = required
    schema["properties"] = properties
    return schema

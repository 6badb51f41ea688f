"""JSON Schema and JSON from one typed definition.

The result types are defined once, as dataclasses (and ``TypedDict`` for the sub-objects that
travel as plain dicts): :func:`dataclass_schema` generates their part of
``results.schema.json`` and :func:`dataclass_json` writes an instance, both from the same
fields, so the schema cannot drift from what is written (a test keeps the committed file equal
to the generated one).

Written by hand rather than with pydantic: the result types are plain dataclasses, the field
types they use are few, and the output must read like a hand-written schema
(``number_or_null`` and ``["string", "null"]`` rather than ``anyOf``).

Type mapping: ``str``, ``int``, ``float``, ``bool``; a ``StrEnum`` or ``Literal`` (an enum, one
value a ``const``); ``list[T]`` and ``tuple[T, ...]``; ``dict[str, T]``; ``Any`` (no
constraint); a nested dataclass or ``TypedDict`` (inline, or ``{"$ref": "#/$defs/NAME"}`` when
it sets ``SCHEMA_DEF = "NAME"``); each optionally ``| None``. ``Annotated[T, keywords(...)]``
adds keywords (``minimum``, ``pattern``...) to ``T``'s schema.

A field's ``metadata`` (see :func:`about`) may add ``description``, ``minimum`` and any other
keywords (``schema``, merged last: on an ``Any`` field it is the whole schema), rename the JSON
key (``json``), leave the key out when the value is ``None`` (``omit_none``: the key is then
optional and never null), or spread a ``dict`` field's items into the object (``spread``: keys a
caller added that the type does not name; the schema allows them as extra properties). Fields
without a default are ``required``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

from xai_checks._util import jsonable

__all__ = ["JSONRecord", "Keywords", "about", "dataclass_json", "dataclass_schema", "keywords"]

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
#: the shared definition every optional number refers to (``results.schema.json``'s ``$defs``)
NUMBER_OR_NULL = {"$ref": "#/$defs/number_or_null"}


@dataclasses.dataclass(frozen=True)
class Keywords:
    """JSON Schema keywords an ``Annotated`` type adds (hashable, as ``typing`` needs)."""

    items: tuple[tuple[str, Any], ...]


def keywords(**values: Any) -> Keywords:
    """``Annotated[int, keywords(minimum=0)]``: ``int`` with these JSON Schema keywords."""
    return Keywords(tuple(values.items()))


def about(
    description: str | None = None,
    *,
    minimum: int | float | None = None,
    json: str | None = None,
    omit_none: bool = False,
    spread: bool = False,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A field's ``metadata`` for the generator (pass as ``field(metadata=about(...))``)."""
    meta: dict[str, Any] = {}
    if description is not None:
        meta["description"] = description
    if minimum is not None:
        meta["minimum"] = minimum
    if json is not None:
        meta["json"] = json
    if omit_none:
        meta["omit_none"] = True
    if spread:
        meta["spread"] = True
    if schema is not None:
        meta["schema"] = dict(schema)
    return meta


def _description(cls: type) -> str | None:
    doc = cls.__doc__ or ""
    if dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}("):
        return None  # the signature dataclasses writes when a class has no docstring
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split()) or None


def _is_typeddict(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, dict) and hasattr(obj, "__required_keys__")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also admits ``null``."""
    if schema == {"type": "number"}:
        return dict(NUMBER_OR_NULL)
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    if "const" in schema:
        return {**schema, "enum": [schema.pop("const"), None]}
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    if not schema:
        return schema
    return {"oneOf": [{"type": "null"}, schema]}


def _type_schema(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema = _type_schema(args[0])
        for extra in args[1:]:
            if isinstance(extra, Keywords):
                schema.update(extra.items)
        return schema
    if origin in (typing.Required, typing.NotRequired):  # a TypedDict key's marker
        return _type_schema(args[0])
    if annotation is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        if type(None) not in args or len(args) != 2:
            raise TypeError(f"only X | None unions are supported, not {annotation}")
        return _nullable(_type_schema(next(a for a in args if a is not type(None))))
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (list, tuple):
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"only tuple[T, ...] is supported, not {annotation}")
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"JSON object keys are strings, not {annotation}")
        values = _type_schema(args[1])
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {"enum": [m.value for m in annotation]}
    if dataclasses.is_dataclass(annotation) or _is_typeddict(annotation):
        name = getattr(annotation, "SCHEMA_DEF", None)
        if name:
            return {"$ref": f"#/$defs/{name}"}
        assert isinstance(annotation, type)
        return dataclass_schema(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    raise TypeError(f"no JSON Schema type for {annotation}")


def _base_of_optional(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return annotation


def _property(annotation: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    if meta.get("omit_none"):
        annotation = _base_of_optional(annotation)
    prop = _type_schema(annotation)
    for key in ("description", "minimum"):
        if key in meta:
            prop[key] = meta[key]
    prop.update(meta.get("schema", {}))
    return prop


def dataclass_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of one instance of dataclass (or ``TypedDict``) ``cls`` as
    :func:`dataclass_json` writes it: an object with one property per field; its docstring's
    first paragraph is the description."""
    hints = typing.get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    if _is_typeddict(cls):
        for name, annotation in hints.items():
            properties[name] = _type_schema(annotation)
            # with postponed annotations ``__required_keys__`` misses NotRequired; the hint has it
            marked_optional = typing.get_origin(annotation) is typing.NotRequired
            if name in cls.__required_keys__ and not marked_optional:  # type: ignore[attr-defined]
                required.append(name)
    else:
        for f in dataclasses.fields(cls):
            if f.metadata.get("spread"):
                continue
            key = f.metadata.get("json", f.name)
            properties[key] = _property(hints[f.name], f.metadata)
            no_default = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            if no_default and not f.metadata.get("omit_none"):
                required.append(key)
    schema: dict[str, Any] = {"type": "object"}
    doc = _description(cls)
    if doc:
        schema["description"] = doc
    if required or not _is_typeddict(cls):
        schema["required"] = required
    schema["properties"] = properties
    return schema


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclass_json(value)
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def dataclass_json(obj: Any) -> dict[str, Any]:
    """``obj`` (a dataclass instance) as the JSON object its :func:`dataclass_schema`
    describes: fields in order under their JSON names, nested records written the same way,
    values made JSON-safe (:func:`xai_checks._util.jsonable`: NaN becomes ``null``)."""
    out: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("spread"):
            spread.update(value or {})
        elif not (value is None and f.metadata.get("omit_none")):
            out[f.metadata.get("json", f.name)] = _to_json(value)
    for key, value in spread.items():
        out.setdefault(str(key), _to_json(value))
    result: dict[str, Any] = jsonable(out)
    return result


class JSONRecord:
    """Mixin for a result dataclass: ``to_dict()`` is :func:`dataclass_json` (so
    :func:`xai_checks._util.jsonable` writes it wherever it sits)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclass_json(self)

"""The walk against the API's own shapes: every request type the installed ``anthropic`` SDK
can send (standard and beta), filled in with a distinct string in every string field, has each
of those strings read by inspection, unless the table calls its field opaque. An SDK that adds
a block type or a field is covered the day it is installed: the default is to read it."""

from __future__ import annotations

import itertools
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

import anthropic.types as standard
import anthropic.types.beta as beta
import pytest

from ztgate.core.texts import Kind
from ztgate.wire.fields import body_text

# The only fields the walk may leave unread (docs/data-protection.md, "Where it looks").
OPAQUE = {
    "signature",
    "encrypted_content",
    "encrypted_index",
    "encrypted_stdout",
    "authorization_token",
    "data",  # only in base64 sources and redacted thinking
}
TEXT = {"text", "description", "title", "context", "cited_text", "stdout", "stderr", "url"}

_counter = itertools.count()


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__total__") and hasattr(tp, "__annotations__")


def _members(tp: Any) -> list[Any]:
    """The alternatives of a type, unwrapped (``Required``, ``Annotated``, unions)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Required, NotRequired, typing.Annotated):
        return _members(args[0])
    if origin in (Union, types.UnionType):
        return [m for a in args for m in _members(a)]
    return [tp]


def _sample(tp: Any, seen: tuple[Any, ...]) -> Any:
    """One value of a type: strings are unique markers, objects have every field."""
    for member in _members(tp):
        origin, args = get_origin(member), get_args(member)
        if member is str:
            return f"marker-{next(_counter)}"
        if origin is Literal:
            return args[0]
        if member in (int, float):
            return 1
        if member is bool:
            return True
        if member is type(None):
            continue
        if origin is dict or member is dict:
            return {"free": f"marker-{next(_counter)}"}
        if origin is not None and getattr(origin, "__name__", "") in (
            "list",
            "Iterable",
            "Sequence",
            "SequenceNotStr",
        ):
            item = _sample(args[0], seen) if args else None
            return [] if item is None else [item]
        if _is_typed_dict(member):
            if member in seen:
                continue
            hints = typing.get_type_hints(member, include_extras=True)
            built = {}
            for key, hint in hints.items():
                value = _sample(hint, (*seen, member))
                if value is not None:
                    built[key] = value
            return built
    return None


def _typed_dicts(root: Any) -> Iterator[Any]:
    """Every request object type reachable from a params type."""
    todo, seen = [root], set()
    while todo:
        tp = todo.pop()
        for member in _members(tp):
            if get_origin(member) is not None:
                todo.extend(get_args(member))
            elif _is_typed_dict(member) and member not in seen:
                seen.add(member)
                yield member
                todo.extend(typing.get_type_hints(member, include_extras=True).values())


def _strings(value: Any, key: Any = None, parent: Any = None) -> Iterator[tuple[str, Any, str]]:
    if isinstance(value, str):
        yield key, parent, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k, value)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key, value)


SHAPES = sorted(
    {
        *_typed_dicts(standard.message_create_params.MessageCreateParamsNonStreaming),
        *_typed_dicts(beta.message_create_params.MessageCreateParamsNonStreaming),
        *_typed_dicts(standard.messages.batch_create_params.Request),
    },
    key=lambda tp: f"{tp.__module__}.{tp.__qualname__}",
)


def test_the_sdk_has_the_shapes_we_expect() -> None:
    assert len(SHAPES) > 150  # block types, sources, tools, results, citations, configs


@pytest.mark.parametrize("shape", SHAPES, ids=lambda tp: tp.__qualname__)
def test_every_string_of_every_shape_is_read(shape: Any) -> None:
    sample = _sample(shape, ())
    assert isinstance(sample, dict)
    found = body_text(sample, max_depth=200)
    read = {f.text for f in found.fields}
    for key, parent, value in _strings(sample):
        if not value.startswith("marker-"):
            continue  # a literal: the API's own enum value
        if value in read:
            continue
        assert key in OPAQUE, f"{shape.__qualname__}.{key} is neither read nor opaque"
        if key == "data":
            assert isinstance(parent, dict)
            assert parent.get("type") in ("base64", "redacted_thinking")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda tp: tp.__qualname__)
def test_what_people_and_tools_write_is_text(shape: Any) -> None:
    sample = _sample(shape, ())
    kinds = {f.text: f.kind for f in body_text(sample, max_depth=200).fields}
    for key, parent, value in _strings(sample):
        if key in TEXT and value in kinds and isinstance(parent, dict):
            assert kinds[value] is Kind.TEXT, f"{shape.__qualname__}.{key}"

"""Just enough JSON Schema (2020-12, as OpenAPI 3.1 uses it) to check answers against the
admin API's own document: type, properties, required, items, oneOf, const, enum, pattern,
minimum, maximum and local ``$ref``."""

from __future__ import annotations

import re
from typing import Any

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def errors(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "$") -> list[str]:
    if "$ref" in schema:
        return errors(resolve(root, schema["$ref"]), value, root, at)
    found: list[str] = []
    kind = schema.get("type")
    if kind is not None and not _is(kind, value):
        return [f"{at}: expected {kind}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        found.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        found.append(f"{at}: below {schema['minimum']}")
    if "maximum" in schema and isinstance(value, int | float) and value > schema["maximum"]:
        found.append(f"{at}: above {schema['maximum']}")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(s, value, root, at)]
        if len(matching) != 1:
            found.append(f"{at}: matches {len(matching)} of oneOf, not exactly one")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}: missing {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += errors(sub, value[name], root, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += errors(schema["items"], item, root, f"{at}[{index}]")
    return found


def _is(kind: str | list[str], value: Any) -> bool:
    if isinstance(kind, list):
        return any(_is(k, value) for k in kind)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), f"only local references: {ref}"
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node

"""Client-side checks of sync events, the same as the server's (``src/sync/event.rs``), so a
notebook learns about a bad argument at once, with the argument's name."""

from __future__ import annotations

import uuid
from typing import List, Optional, Sequence, Union

from .models import Operation

#: Longest filter the server accepts, in characters.
MAX_FILTER_CHARS = 4000
#: Longest ``created_by`` the server accepts, in characters.
MAX_NAME_CHARS = 200
_PART_CHARS = set("_$# ")


def table_parts(name: object, argument: str) -> List[str]:
    """The dotted parts of a table name: 1 to 3 identifiers of letters, digits, ``_``, ``$``,
    ``#`` and spaces, not starting with a digit or a space."""
    if not isinstance(name, str):
        raise ValueError(f"{argument}: expected a table name (a string), got {type(name).__name__}")

    def bad(reason: str) -> ValueError:
        return ValueError(f"{argument}: `{name}` is not a table name ({reason})")

    if not name:
        raise bad("it is empty")
    parts = name.split(".")
    if len(parts) > 3:
        raise bad("more than three dotted parts")
    for part in parts:
        if not part or len(part) > 128:
            raise bad("each dotted part must have 1 to 128 characters")
        if part[0] in "0123456789 ":
            raise bad("a part starts with a digit or a space")
        if not all(c.isalnum() or c in _PART_CHARS for c in part):
            raise bad("only letters, digits, `_`, `$`, `#` and spaces are allowed")
    return parts


def quote_table(name: str, argument: str) -> str:
    """A validated table name quoted for Spark SQL (`catalog`.`schema`.`table`)."""
    return ".".join(f"`{p}`" for p in table_parts(name, argument))


def operation(value: object) -> Operation:
    if isinstance(value, Operation):
        return value
    if isinstance(value, str):
        try:
            return Operation(value)
        except ValueError:
            pass
    raise ValueError(
        f"operation: unknown operation {value!r}; expected INSERT, UPSERT, UPDATE or DELETE"
    )


def primary_keys(op: Operation, keys: Optional[Union[Sequence[str], str]]) -> List[str]:
    if isinstance(keys, str):
        raise ValueError("primary_keys: expected a list of column names, not one string")
    result = list(keys or [])
    if op.needs_keys and not result:
        raise ValueError(f"primary_keys: {op.value} needs at least one key")
    for i, key in enumerate(result):
        if not isinstance(key, str):
            raise ValueError(f"primary_keys: {key!r} is not a column name")
        try:
            parts = table_parts(key, "primary_keys")
        except ValueError:
            parts = []
        if len(parts) != 1:
            raise ValueError(f"primary_keys: `{key}` is not a column name")
        if key in result[:i]:
            raise ValueError(f"primary_keys: `{key}` is listed twice")
    return result


def filter_expression(value: object) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"filter: expected a SQL condition (a string), got {type(value).__name__}")
    if not value.strip():
        raise ValueError("filter: is empty; leave it out (None) to sync every row")
    if len(value) > MAX_FILTER_CHARS:
        raise ValueError(f"filter: longer than {MAX_FILTER_CHARS} characters")
    return value


def created_by(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            "created_by: required when events are written into the events table: the server "
            "applies the event as this user of its permissions file"
        )
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"created_by: longer than {MAX_NAME_CHARS} characters")
    return value


def event_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"event_id: expected a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"event_id: `{value}` is not a UUID") from None

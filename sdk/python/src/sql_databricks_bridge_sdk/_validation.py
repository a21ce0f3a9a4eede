"""Client-side checks of events, the same as the server's (``src/sync/event.rs``), so a
notebook learns about a bad argument at once, with the argument's name."""

from __future__ import annotations

import json
import math
import numbers
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .models import Operation

#: Longest filter the server accepts, in characters.
MAX_FILTER_CHARS = 4000
#: Longest ``created_by`` (and RUN ``pipeline``) the server accepts, in characters.
MAX_NAME_CHARS = 200
#: Longest country name the server accepts, in characters.
MAX_COUNTRY_CHARS = 64
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
    """A sync operation (RUN is refused: it has its own methods)."""
    op: Optional[Operation] = None
    if isinstance(value, Operation):
        op = value
    elif isinstance(value, str):
        try:
            op = Operation(value)
        except ValueError:
            pass
    if op is Operation.RUN:
        raise ValueError(
            "operation: RUN runs a pipeline, not a sync; use create_run_event(pipeline, "
            "country, params) or BridgeClient.submit_run_event"
        )
    if op is None:
        raise ValueError(
            f"operation: unknown operation {value!r}; expected INSERT, UPSERT, UPDATE or DELETE"
        )
    return op


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


def pipeline_name(value: object) -> str:
    """A RUN event's pipeline: a name or file name under ``pipelines/`` of letters, digits,
    ``_``, ``-`` and ``.``, not starting with ``.``, at most 200 characters."""
    if not isinstance(value, str):
        raise ValueError(
            f"pipeline: expected a pipeline name (a string), got {type(value).__name__}"
        )
    if not value:
        raise ValueError("pipeline: is empty; a RUN event needs the pipeline to run")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"pipeline: longer than {MAX_NAME_CHARS} characters")
    if value.startswith(".") or not all(c.isalnum() or c in "_-." for c in value):
        raise ValueError(
            f"pipeline: `{value}` is not a pipeline name (letters, digits, `_`, `-` and `.`, "
            "not starting with `.`)"
        )
    return value


def country(value: object) -> Optional[str]:
    """A RUN event's country: ASCII letters, digits, ``_`` and ``-``, 1 to 64 characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(
            f"country: expected a country name (a string), got {type(value).__name__}"
        )
    if not value:
        raise ValueError("country: is empty; leave it out (None) for a run without a country")
    ok = len(value) <= MAX_COUNTRY_CHARS and all(
        (c.isascii() and c.isalnum()) or c in "_-" for c in value
    )
    if not ok:
        raise ValueError(
            f"country: `{value[:80]}` is not a country name (ASCII letters, digits, `_` and `-`, "
            f"at most {MAX_COUNTRY_CHARS} characters)"
        )
    return value


def run_params(value: object) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """A RUN event's parameter overrides: a mapping of names (letters, digits, ``_``) to strings,
    numbers or booleans. Returns the overrides (names sorted; integers as ``int``, other real
    numbers as ``float``) and their JSON text (``json.dumps(sort_keys=True)``); ``(None, None)``
    for ``None`` or an empty mapping."""
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"params: expected a mapping of parameter names to values, got {type(value).__name__}"
        )
    result: Dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise ValueError(f"params: {name!r} is not a parameter name (a string)")
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise ValueError(f"params: `{name}` is not a parameter name (letters, digits, `_`)")
        result[name] = _param_value(name, item)
    if not result:
        return None, None
    result = dict(sorted(result.items()))
    return result, json.dumps(result, sort_keys=True, allow_nan=False)


def _param_value(name: str, item: object) -> Union[str, int, float, bool]:
    if isinstance(item, (bool, str)):
        return item
    if isinstance(item, numbers.Integral):  # int, and numpy's integers
        return int(item)
    if isinstance(item, numbers.Real):  # float, and numpy's floats
        number = float(item)
        if not math.isfinite(number):
            raise ValueError(f"params.{name}: {number} is not a finite number")
        return number
    what = "None" if item is None else type(item).__name__
    raise ValueError(f"params.{name}: expected a string, number or boolean, got {what}")


def run_request(
    pipeline: object, country_name: object, params: object
) -> Tuple[str, Optional[str], Optional[Dict[str, Any]], Optional[str]]:
    """Every field of a RUN event, checked: (pipeline, country, params, params as JSON text)."""
    name = pipeline_name(pipeline)
    checked_country = country(country_name)
    overrides, text = run_params(params)
    return name, checked_country, overrides, text

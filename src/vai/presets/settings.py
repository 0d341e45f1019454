"""``--set KEY=VALUE``: changing a preset's fields from the command line.

A preset is a frozen dataclass; each field's type says how its text is read (``int``, ``float``,
``bool``, ``str``, or a tuple of them written with commas, e.g. ``aux_tasks=inverse,reward``), and
:func:`setting` puts the values it accepts next to it, in the field's metadata. A number accepts
what its :class:`Range` allows, ``> 0`` for a field that names none; a text, or each item of a
tuple of texts, one of its ``choices`` where it names them. A preset's ``__post_init__`` may check
what involves several fields; it raises ValueError, which :func:`override` reports as the user's.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from vai.errors import UserError


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts."""

    minimum: float | None = 0
    """Lower limit; None for none, negative numbers included."""
    inclusive: bool = False
    """Whether ``minimum`` itself is accepted (where 0 means none, off, or the task's default)."""
    maximum: float | None = None
    """Upper limit, itself accepted; None for none."""

    def problem(self, value: float) -> str | None:
        """Why ``value`` is outside the range, or None. NaN is outside every range with a limit."""
        if self.minimum is not None:
            if self.inclusive and not value >= self.minimum:
                return f"must be >= {self.minimum:g}"
            if not self.inclusive and not value > self.minimum:
                return f"must be > {self.minimum:g}"
        if self.maximum is not None and not value <= self.maximum:
            return f"must be at most {self.maximum:g}"
        return None


POSITIVE = Range()
"""The range of a number whose field names none."""


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    signed: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A preset field with ``default`` and the values it accepts: a number from ``minimum`` (itself
    included; without one, above 0) up to ``maximum``, or any number if ``signed``; a text, or each
    item of a tuple of texts, one of ``choices``."""
    if signed:
        bounds = Range(None, maximum=maximum)
    elif minimum is not None:
        bounds = Range(minimum, inclusive=True, maximum=maximum)
    else:
        bounds = Range(maximum=maximum)
    metadata = {"range": bounds} if bounds != POSITIVE else {}
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


def named_preset(presets: dict[str, Any], name: str) -> Any:
    """``presets[name]``, or a :class:`UserError` naming the presets."""
    try:
        return presets[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}") from None


_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def parse_bool(text: str) -> bool:
    """``1``, ``true``, ``yes`` or ``0``, ``false``, ``no`` (any case); ValueError otherwise."""
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def parse_value(kind: Any, text: str) -> Any:
    """``text`` read as type ``kind``; a tuple's items are separated by commas (none: empty text)."""
    if typing.get_origin(kind) is tuple:
        items = [item.strip() for item in text.split(",") if item.strip()]
        kinds = typing.get_args(kind)
        if kinds[-1] is Ellipsis:
            kinds = (kinds[0],) * len(items)
        elif len(kinds) != len(items):
            raise ValueError(text)
        return tuple(parse_value(inner, item) for inner, item in zip(kinds, items, strict=True))
    if kind is bool:
        return parse_bool(text)
    if kind in (int, float, str):
        return kind(text)
    raise TypeError(f"no --set reading for fields of type {kind}")


def value_problem(field: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is not one of the values ``field`` accepts, or None (a tuple: any of its items)."""
    choices = field.metadata.get("choices")
    bounds = field.metadata.get("range", POSITIVE)
    for item in value if isinstance(value, tuple) else (value,):
        if choices is not None and item not in choices:
            unknown = f"{item!r} is not one of" if isinstance(value, tuple) else "choose one of"
            return f"{unknown} {', '.join(choices)}"
        if isinstance(item, int | float) and not isinstance(item, bool):
            problem = bounds.problem(item)
            if problem:
                return f"it {problem}"
    return None


def override(preset, assignments: list[str] | None):
    """A copy of a preset dataclass with ``KEY=VALUE`` assignments applied (``--set`` on the CLI).

    Unknown keys, values of the wrong type and values a field does not accept are UserErrors, one
    line naming the field and what it takes.
    """
    if not assignments:
        return preset
    fields = {field.name: field for field in dataclasses.fields(preset) if field.name != "name"}
    kinds = typing.get_type_hints(type(preset))
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in fields:
            raise UserError(f"cannot set {assignment!r}: use KEY=VALUE with KEY one of {', '.join(fields)}")
        field = fields[key]
        try:
            changes[key] = parse_value(kinds[key], text)
        except ValueError:
            raise UserError(f"cannot set {key}={text!r}: expected {field.type}") from None
        problem = value_problem(field, changes[key])
        if problem:
            raise UserError(f"cannot set {key}={text!r}: {problem}")
    try:
        return dataclasses.replace(preset, **changes)
    except ValueError as error:
        raise UserError(f"cannot set {' '.join(assignments)}: {error}") from None

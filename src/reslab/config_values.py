"""A config value against its field's type annotation: coercion (what a user typed, or YAML read, turned
into what the field holds) and conformance (whether a value is of the field's type), one rule per kind
of annotation, read with :func:`typing.get_origin` / :func:`typing.get_args`.

The annotations :class:`reslab.config.TrainConfig` uses: ``bool``, ``int``, ``float``, ``str``,
``Literal[...]`` (words), unions of them (``X | None``, ``int | float``, ``bool | Literal["auto"]``),
``list[X]``, ``dict[str, Any]`` and ``Any`` (``Literal``: PEP 586; ``X | Y``: PEP 604). A value from
``--set`` arrives as YAML read it, one from a flag as a string; YAML 1.1 reads ``on``/``off``/``yes``/``no``
as booleans (https://yaml.org/type/bool.html, PyYAML's ``safe_load``), so a boolean given to a ``Literal``
field means the word it was spelled as (``amp: off``), when the field has that word.

Pure functions of a value and a type: no import of :mod:`reslab.config`, of torch, or of anything above.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal

from reslab.errors import ConfigError

# YAML 1.1's spellings of the booleans (and the digits), as a user types them after ``--set key=``.
BOOL_SPELLINGS: dict[str, bool] = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
# What an optional field (``X | None``) takes for None; a field may add its own word (``auto``).
NONE_WORDS = ("none", "null", "")


class Mismatch(ValueError):
    """``value`` is not of the annotated type; ``what`` says what the type takes ("an integer")."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def members(hint: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``int | None`` -> ``(int, NoneType)``); ``(hint,)`` otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def literal_words(hint: Any) -> tuple[Any, ...]:
    """The words an annotation documents: a ``Literal``'s values, with ``False``/``True`` where the union
    also takes a bool (``bool | Literal["auto"]`` -> ``(False, True, "auto")``); ``()`` if it has none."""
    words: list[Any] = []
    for m in members(hint):
        if typing.get_origin(m) is Literal:
            words += typing.get_args(m)
        elif m is bool:
            words += [False, True]
    has_literal = any(typing.get_origin(m) is Literal for m in members(hint))
    return tuple(words) if has_literal else ()


def _word(w: Any) -> str:
    return str(w).lower() if isinstance(w, bool) else str(w)


def describe(hint: Any) -> str:
    """What an annotation takes, for an error message: ``"an integer or none"``, ``"one of auto, bf16, off"``."""
    words = literal_words(hint)
    if words:
        return "one of " + ", ".join(map(_word, words))
    parts = members(hint)
    if float in parts:  # int | float: a count or a fraction, both numbers
        parts = tuple(p for p in parts if p is not int)
    return " or ".join(dict.fromkeys(_describe_one(p) for p in parts))


def _describe_one(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return "a list" if item is Any else f"a list of {_plural(describe(item))}"
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return "none" if hint is type(None) else simple.get(origin, "a value")


def _plural(what: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(what, what)


def norm_value(v: Any) -> Any:
    """A config value in a form that compares equal across YAML/JSON round trips (1.0 == 1, tuples as lists)."""
    if isinstance(v, (list, tuple)):
        return [norm_value(x) for x in v]
    if isinstance(v, dict):
        return {k: norm_value(x) for k, x in sorted(v.items())}
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


# ------------------------------------------------------------------------------------------ coercion


def coerce(key: str, hint: Any, value: Any, *, source: str, none_words: tuple[str, ...] = NONE_WORDS) -> Any:
    """``value`` as field ``key`` annotated ``hint`` holds it, or a one-line :class:`ConfigError`
    (``"--set: batch_size must be an integer, got 'big'"``). ``none_words``: the strings an optional
    field reads as None."""
    try:
        return coerce_value(hint, value, none_words=none_words)
    except Mismatch as e:
        raise ConfigError(f"{source}: {key} must be {e.what}, got {value!r}") from None


def coerce_value(hint: Any, value: Any, *, none_words: tuple[str, ...] = NONE_WORDS) -> Any:
    """``value`` as type ``hint`` holds it; :class:`Mismatch` if it cannot be. A union tries its members
    in order (None first, for the none words), so ``bool | Literal["auto"]`` reads ``"yes"`` as True
    and ``"auto"`` as the word, and ``int | float`` reads ``"500"`` as a count and ``"0.1"`` as a fraction."""
    parts = members(hint)
    if type(None) in parts and (value is None or (isinstance(value, str) and value.lower() in none_words)):
        return None
    kinds = [p for p in parts if p is not type(None)]
    for kind in kinds:
        try:
            return _coerce_one(kind, value)
        except Mismatch as e:
            if len(kinds) == 1:  # one kind (``int``, ``float | None``): its own reason ("a finite number")
                raise Mismatch(e.what) from None
    raise Mismatch(describe(hint))


def _coerce_one(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if origin is Literal:
        return _coerce_word(typing.get_args(hint), value)
    if origin is list:
        return _coerce_list(hint, value)
    convert = {
        bool: _coerce_bool,
        int: _coerce_int,
        float: _coerce_float,
        str: _coerce_str,
        dict: _coerce_dict,
    }
    return convert[origin](value) if origin in convert else value  # Any: as given


def _coerce_word(words: tuple[Any, ...], value: Any) -> Any:
    if isinstance(value, bool):  # YAML read a word as a bool (amp: off): the word, if the field has it
        spelled = [w for w in words if BOOL_SPELLINGS.get(str(w).lower()) is value]
        if spelled:
            return spelled[0]
    elif isinstance(value, str) and value in words:
        return value
    raise Mismatch("one of " + ", ".join(map(_word, words)))


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in BOOL_SPELLINGS:
        return BOOL_SPELLINGS[value.lower()]
    raise Mismatch("true or false")


def _coerce_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise Mismatch("an integer") from None
    if isinstance(number, float) and number.is_integer():
        return int(number)
    raise Mismatch("an integer")


def _coerce_float(value: Any) -> float:
    if isinstance(value, bool):
        raise Mismatch("a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Mismatch("a number") from None
    if not math.isfinite(number):
        raise Mismatch("a finite number")
    return number


def _coerce_str(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise Mismatch("a string")


def _coerce_list(hint: Any, value: Any) -> list[Any]:
    (item,) = typing.get_args(hint) or (Any,)
    if isinstance(value, str):  # --set freeze=stem,layer1
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise Mismatch(describe(hint))
    try:
        return [coerce_value(item, v) for v in value]
    except Mismatch:
        raise Mismatch(describe(hint)) from None


def _coerce_dict(value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Mismatch("a mapping")
    return dict(value)


# ---------------------------------------------------------------------------------------- conformance


def conforms(hint: Any, value: Any) -> bool:
    """Whether ``value`` is already of type ``hint`` (no conversion: ``"0.1"`` is not a float; an int is,
    a bool is not a number)."""
    return any(_conforms_one(m, value) for m in members(hint))


def _conforms_one(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(w) and value == w for w in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(conforms(item, v) for v in value)
    if origin in (int, float) and isinstance(value, bool):
        return False
    if origin is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, origin)


def check_type(key: str, hint: Any, value: Any) -> None:
    """A one-line :class:`ConfigError` unless ``value`` is of field ``key``'s type ``hint``."""
    if not conforms(hint, value):
        raise ConfigError(f"{key} must be {describe(hint)}, got {value!r}")


def check_range(
    key: str, value: Any, *, low: float = 0.0, strict: bool = False, below: float | None = None
) -> None:
    """A number's range: ``value > low`` (``strict``) or ``>= low``, and ``< below`` if given (None: unset,
    nothing to check). Messages say "positive", "non-negative" or the interval."""
    if value is None:
        return
    if below is not None:
        if not low <= value < below:
            raise ConfigError(f"{key} must be in [{low:g}, {below:g}), got {value}")
    elif value < low or (strict and value == low):
        raise ConfigError(f"{key} must be {'positive' if strict else 'non-negative'}, got {value}")


def check_synthetic_options(options: dict[str, Any], names: tuple[str, ...]) -> None:
    """``data_kwargs`` of the synthetic data: keys among ``names``, a (C, H, W) ``shape`` of positive
    integers, the counts non-negative integers (``num_classes`` positive)."""
    for key, value in options.items():
        if key not in names:
            raise ConfigError(f"data_kwargs: unknown option {key!r}; synthetic takes {', '.join(names)}")
        if key == "shape":
            ok = isinstance(value, (list, tuple)) and len(value) == 3
            if not ok or not all(conforms(int, v) and v > 0 for v in value):
                raise ConfigError(f"data_kwargs.shape must be [C, H, W] of positive integers, got {value!r}")
            continue
        low, what = (1, "positive") if key == "num_classes" else (0, "non-negative")
        if not conforms(int, value) or value < low:
            raise ConfigError(f"data_kwargs.{key} must be a {what} integer, got {value!r}")


def check_medmnist_options(options: dict[str, Any], names: tuple[str, ...]) -> None:
    """``data_kwargs`` of MedMNIST: a ``flag`` (a name; which exist is the ``medmnist`` package's table's
    to say, when the data loads) and optionally ``size``, an integer (28, 64, 128 or 224)."""
    for key in options:
        if key not in names:
            raise ConfigError(f"data_kwargs: unknown option {key!r}; medmnist takes {', '.join(names)}")
    if not isinstance(options.get("flag"), str) or not options["flag"].strip():
        raise ConfigError(
            "medmnist needs the data set's name: --set data_kwargs.flag=pathmnist (or chestmnist, ...)"
        )
    if "size" in options and not (conforms(int, options["size"]) and options["size"] in (28, 64, 128, 224)):
        raise ConfigError(f"data_kwargs.size must be 28, 64, 128 or 224, got {options['size']!r}")


def check_data_kwargs(dataset: str, options: dict[str, Any], takes: dict[str, tuple[str, ...]]) -> None:
    """``data_kwargs`` of ``dataset``: the options of a data set in ``takes`` (synthetic, medmnist), none for
    the others."""
    if dataset == "medmnist":
        check_medmnist_options(options, takes[dataset])
    elif options and dataset not in takes:
        raise ConfigError(
            f"data_kwargs apply to the synthetic data set only (and medmnist's flag, size), not {dataset}"
        )
    else:
        check_synthetic_options(options, takes["synthetic"])

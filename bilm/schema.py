"""How an options section is checked, read and written back (no TensorFlow).

A section is a frozen dataclass with a rule table (:class:`Rule` per field: type, range, JSON
key, default in a file); :class:`Section` derives its ``from_dict``/``to_dict`` and its checks
from that table, so every section validates itself in ``__post_init__`` (``from_dict``,
``dataclasses.replace`` and direct construction share the same checks and the same one-line
messages). Errors name the offending key (dotted: ``char_cnn.embedding.dim``) and the file;
keys nothing reads are kept in ``extra``, written back, and warned about once.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TypeVar

__all__ = ["UNTYPED_KEYS", "OptionsError", "Rule", "Section", "apply_rules", "extra_keys",
           "fail", "fetch", "warn_unknown", "where"]

# the options' warnings keep the logger they always had
logger = logging.getLogger("bilm.options")

# Dotted keys ("my_key", "lstm.my_key", "char_cnn.embedding.my_key") that have no typed field
# here but that another part of the toolkit reads from ``extra``: declared here, they load
# without the unknown-key warning. Keys starting with "_" never warn (JSON's usual comments).
UNTYPED_KEYS: frozenset[str] = frozenset()


class OptionsError(ValueError):
    """An options file or dict is missing a key or holds a value of the wrong type or range."""


def where(source: str | None) -> str:
    return f" in {source}" if source else ""


def fail(key: str, source: str | None, rule: str, got: str) -> NoReturn:
    raise OptionsError(f"option '{key}'{where(source)} must be {rule}, got {got}")


@dataclass(frozen=True)
class Rule:
    """The type and range of one option (and how a :class:`Section` reads and writes it)."""

    kind: str  # int | float | bool | str; ints are accepted for floats, 0/1 for bools
    low: int | None = None
    high: int | None = None
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False
    nullable: bool = False  # None (JSON null) allowed
    choices: tuple[Any, ...] = ()
    choices_text: str = ""  # how to say the choices, when a plain list is not clear enough
    name: str = ""  # the JSON key, when it is not the field's name ("embedding.dim": nested)
    # a value no kind describes: parse(value, dotted key, source) checks and normalizes it
    parse: Callable[[Any, str, str | None], Any] | None = None
    # reading a file: the value when the key is absent, where the field itself has no default
    default: Any = ...
    none_is_default: bool = False  # reading a file: JSON null means the default
    omit_default: bool = False  # written back only when it differs from its default

    def describe_range(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low}, "
                    f"{self.high}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"

    def check(self, value: Any, key: str, source: str | None) -> Any:
        """``value`` with its type normalized (3 -> 3.0 for a float, 1 -> True for a bool)."""
        if self.parse is not None:
            return self.parse(value, key, source)
        if value is None and self.nullable:
            return None
        null = " or null" if self.nullable else ""
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            # JSON written by hand often has 3 for 3.0; accept ints for floats.
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool) or value in (0, 1),
            "str": isinstance(value, str),
        }[self.kind]
        if not ok:
            fail(key, source, f"{self.kind}{null}", f"{value!r} ({type(value).__name__})")
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):  # Python's json reads NaN, Infinity and -Infinity
                fail(key, source, f"a finite number{null}", repr(value))
        elif self.kind == "bool":
            value = bool(value)
        if self.choices and value not in self.choices:
            text = self.choices_text or f"one of {', '.join(map(str, self.choices))}"
            fail(key, source, text, repr(value))
        if self.low is not None or self.high is not None:
            too_low = self.low is not None and (
                value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and (
                value >= self.high if self.high_open else value > self.high)
            if too_low or too_high:
                fail(key, source, f"{self.describe_range()}{null}", repr(value))
        return value


def apply_rules(options: Any, rules: Mapping[str, Rule], prefix: str) -> None:
    """Check (and normalize in place) every field of a frozen dataclass that has a rule."""
    for attr, rule in rules.items():
        key = f"{prefix}.{rule.name or attr}" if prefix else rule.name or attr
        object.__setattr__(options, attr, rule.check(getattr(options, attr), key, options.source))


def fetch(d: Mapping[str, Any], key: str, path: str, source: str | None,
          default: Any = ..., none_is_default: bool = False) -> Any:
    """``d[key]``, or ``default`` when absent (or null, with ``none_is_default``)."""
    if key not in d or (none_is_default and d[key] is None):
        if default is ...:
            raise OptionsError(f"missing option '{f'{path}.{key}' if path else key}'"
                               f"{where(source)}")
        return default
    return d[key]


def extra_keys(d: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known = set(known)
    return {k: v for k, v in d.items() if k not in known}


_warned: set[tuple[str | None, str]] = set()  # (source, dotted key): warn once per process


def warn_unknown(d: Mapping[str, Any], known: Iterable[str], prefix: str,
                 source: str | None) -> None:
    """Warn (once per file and key) about keys nothing reads: most are misspelt known keys."""
    known = sorted(known)
    for key in d:
        key = str(key)
        dotted = f"{prefix}.{key}" if prefix else key
        if key in known or key.startswith("_") or dotted in UNTYPED_KEYS:
            continue
        # a dict without a file is usually the same options again, already warned about
        if (source, dotted) in _warned or (
                source is None and any(k == dotted for _, k in _warned)):
            continue
        _warned.add((source, dotted))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        logger.warning("unknown option '%s'%s is not used (it is kept when the options are "
                       "written back)%s", dotted, where(source), hint)


S = TypeVar("S", bound="Section")


def _jsonable(value: Any) -> Any:
    """Tuples (a normalized list, such as char_cnn.filters) back to JSON lists."""
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


class Section:
    """Base of a frozen dataclass options section whose ``RULES`` say everything about it.

    ``RULES`` maps each field to its :class:`Rule`, in the order the fields are checked, read
    and written; ``PREFIX`` is the section's key in messages (``lstm``, ``encoder``,
    ``char_cnn``). The dataclass has ``extra`` (unknown keys, kept), ``source`` (the file, for
    messages) and, for each nested mapping its rules name (``"embedding.dim"``), a
    ``<mapping>_extra`` field. A file's value is the field's default when its key is absent
    (or :attr:`Rule.default`); required otherwise.
    """

    RULES: ClassVar[Mapping[str, Rule]] = {}
    PREFIX: ClassVar[str] = ""
    # keys of the section's mapping that another reader takes (an encoder section's "type",
    # read by the registry): known, so never warned about nor kept in ``extra``
    READ_ELSEWHERE: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        apply_rules(self, self.RULES, self.PREFIX)

    @classmethod
    def _keys(cls) -> dict[str, list[str]]:
        """JSON keys by mapping: "" for the section's own, else the nested mapping's name."""
        keys: dict[str, list[str]] = {"": list(cls.READ_ELSEWHERE)}
        for attr, rule in cls.RULES.items():
            sub, _, key = (rule.name or attr).rpartition(".")
            if sub and sub not in keys:
                keys[""].append(sub)
            keys.setdefault(sub, []).append(key)
        return keys

    @classmethod
    def _default(cls, attr: str, rule: Rule) -> Any:
        if rule.default is not ...:
            return rule.default
        f = next(f for f in dataclasses.fields(cls) if f.name == attr)
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return ...  # required

    @classmethod
    def from_dict(cls: type[S], d: Mapping[str, Any], source: str | None = None) -> S:
        """Read the section from its parsed JSON; ``source`` names the file in errors."""
        keys = cls._keys()
        warn_unknown(d, keys[""], cls.PREFIX, source)
        maps = {"": d}
        for sub, sub_keys in keys.items():
            if sub:
                inner = d.get(sub)
                if not isinstance(inner, Mapping):
                    raise OptionsError(f"missing option '{cls.PREFIX}.{sub}.{sub_keys[0]}'"
                                       f"{where(source)}")
                warn_unknown(inner, sub_keys, f"{cls.PREFIX}.{sub}", source)
                maps[sub] = inner
        values: dict[str, Any] = {}
        for attr, rule in cls.RULES.items():
            sub, _, key = (rule.name or attr).rpartition(".")
            path = f"{cls.PREFIX}.{sub}" if sub else cls.PREFIX
            values[attr] = fetch(maps[sub], key, path, source, default=cls._default(attr, rule),
                                 none_is_default=rule.none_is_default)
        for sub, sub_keys in keys.items():
            values[f"{sub}_extra" if sub else "extra"] = extra_keys(maps[sub], sub_keys)
        return cls(**values, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The section's JSON: every key, but an ``omit_default`` one only when set, plus the
        unknown keys that were read."""
        d: dict[str, Any] = {}
        for attr, rule in self.RULES.items():
            value = getattr(self, attr)
            if rule.omit_default and value == self._default(attr, rule):
                continue
            sub, _, key = (rule.name or attr).rpartition(".")
            (d.setdefault(sub, {}) if sub else d)[key] = _jsonable(value)
        for sub in self._keys():
            if sub:
                d.setdefault(sub, {}).update(getattr(self, f"{sub}_extra"))
        d.update(self.extra)
        return d

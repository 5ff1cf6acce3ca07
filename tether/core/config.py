"""Frozen dataclass configs: JSON round-trip, dotted overrides, CLI parsing and help from field docstrings.

Owns turning strings (CLI flags, JSON) into validated config objects, and nothing else: defaults live in
the dataclasses, invariants in their `__post_init__`. Every error is raised before any work starts and
names the field, the bad value and what is allowed.

Supported field types: int, float, str, bool, Literal[...], X | None, tuple[X, ...], tuple[X, Y, ...] and
nested frozen dataclasses. Field documentation is the attribute docstring under the field (as in cleanrl);
`field_docs` reads it from the source, so there is never a second copy.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import math
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

__all__ = ["ConfigError", "field_docs", "to_dict", "from_dict", "override", "parse_args", "help_text",
           "check", "leaf_fields", "to_json", "from_json", "preset_name"]


class ConfigError(ValueError):
    """A config value or key is invalid. The message names the field, the value and what is allowed."""


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf where it cannot continue; the message is one line naming what to change.

    Defined here, beside ConfigError, so the CLI can report it without importing torch."""


def check(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise ConfigError unless `ok`; for use in `__post_init__`."""
    if not ok:
        raise ConfigError(f"config field {field!r}: got {value!r}, expected {allowed}")


def check_rate(value: float, field: str, *, usual: tuple[float, float]) -> None:
    """A learning rate or temperature: a finite float > 0 (else ConfigError); one warning line on stderr when it
    lies far outside the `usual` range, where runs diverge or do not move."""
    check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, field, value, "a finite float > 0")
    low, high = usual
    if not low <= value <= high:
        print(f"warning: {field}={value:g} is far outside the usual {low:g}..{high:g}; the run will likely diverge "
              "or not learn", file=sys.stderr, flush=True)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass, by field name (inherited fields included)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:] + [None], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dc_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def leaf_fields(cls: type, prefix: str = "") -> dict[str, tuple[Any, type, str]]:
    """Flattened leaves: dotted path -> (type annotation, owning dataclass, field name)."""
    out: dict[str, tuple[Any, type, str]] = {}
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_dc_type(tp):
            out.update(leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (tp, cls, f.name)
    return out


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a comma-separated list of {_describe(args[0])}" if args[-1] is Ellipsis else \
            f"{len(args)} comma-separated values"
    if tp is type(None):
        return "none"
    return f"a{'n' if tp is int else ''} {getattr(tp, '__name__', str(tp))}"


def _coerce(raw: Any, tp: Any, path: str) -> Any:
    """Convert `raw` (a string from the CLI, or a JSON value) to type `tp`, or raise ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"config field {path!r}: got {raw!r}, expected {_describe(tp)}")
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(raw, a, path)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        for a in args:
            if raw == a or (isinstance(raw, str) and not isinstance(a, str) and raw == str(a)):
                return a
        raise bad
    if origin is tuple:
        items = [s for s in raw.split(",") if s != ""] if isinstance(raw, str) else list(raw)
        if args[-1] is Ellipsis:
            return tuple(_coerce(x, args[0], path) for x in items)
        if len(items) != len(args):
            raise bad
        return tuple(_coerce(x, a, path) for x, a in zip(items, args, strict=False))
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise bad
    if tp is int:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            return raw
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise bad from None
    if tp is float:
        if isinstance(raw, bool):
            raise bad
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad from None
        if math.isnan(value):
            raise bad
        return value
    if tp is str:
        if not isinstance(raw, str):
            raise bad
        return raw
    raise ConfigError(f"config field {path!r} has unsupported type {tp!r}")


def _build(cls: type, kwargs: dict[str, Any], path: str) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid config{' section ' + repr(path.rstrip('.')) if path else ''}: {e}") from None


def _unknown(key: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config field {key!r}{hint} Valid fields: {', '.join(valid)}")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict (a config's `to_dict`) as {"a.b.c": leaf}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Exact, JSON-able dump of a config (tuples become lists)."""
    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        return x
    return conv(cfg)


def from_dict(cls: type, d: Mapping[str, Any], _path: str = "") -> Any:
    """Rebuild a config from `to_dict` output; unknown keys or bad values raise ConfigError."""
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, raw in d.items():
        if key not in names:
            raise _unknown(_path + key, [_path + n for n in names])
        tp = _hints(cls)[key]
        if _is_dc_type(tp):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"config section {_path + key!r}: expected an object, got {raw!r}")
            kwargs[key] = from_dict(tp, raw, f"{_path}{key}.")
        else:
            kwargs[key] = _coerce(raw, tp, _path + key)
    return _build(cls, kwargs, _path)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=False)


def from_json(cls: type, text: str) -> Any:
    return from_dict(cls, json.loads(text))


def override(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """Return a copy of `cfg` with dotted-path overrides applied (values coerced from strings)."""
    leaves = leaf_fields(type(cfg))
    nested: dict[str, Any] = {}
    for key, raw in overrides.items():
        path = ".".join(part.replace("-", "_") for part in key.split("."))
        if path not in leaves:
            raise _unknown(path, list(leaves))
        tp = leaves[path][0]
        nested[path] = _coerce(raw, tp, path)
    return _replace(cfg, nested, "")


def _replace(cfg: Any, values: dict[str, Any], prefix: str) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        path = prefix + f.name
        if path in values:
            changes[f.name] = values[path]
        elif any(k.startswith(path + ".") for k in values):
            changes[f.name] = _replace(getattr(cfg, f.name), values, path + ".")
    if not changes:
        return cfg
    kwargs = {f.name: changes.get(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    return _build(type(cfg), kwargs, prefix)


def _split_argv(argv: Sequence[str], leaves: Mapping[str, tuple[Any, type, str]],
                positional: str | None, aliases: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Split argv into {dotted field: raw string} and positional arguments (`aliases`: flag -> dotted field)."""
    flags: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            if positional is None:
                raise ConfigError(f"unexpected argument {tok!r}; flags look like --name VALUE")
            rest.append(tok)
            i += 1
            continue
        key, eq, val = tok[2:].partition("=")
        key = ".".join(p.replace("-", "_") for p in key.split("."))
        key = (aliases or {}).get(key, key)
        head, _, last = key.rpartition(".")
        negated = f"{head}.{last[3:]}" if head else last[3:]
        if not eq and last.startswith("no_") and negated in leaves and leaves[negated][0] is bool:
            flags[negated] = False
            i += 1
            continue
        if key not in leaves:
            raise _unknown(key, list(leaves))
        is_bool = leaves[key][0] is bool
        if eq:
            flags[key] = val
            i += 1
        elif is_bool and (i + 1 == len(argv) or argv[i + 1].lower() not in ("true", "false", "1", "0", "yes", "no")):
            flags[key] = True
            i += 1
        elif i + 1 < len(argv):
            flags[key] = argv[i + 1]
            i += 2
        else:
            raise ConfigError(f"flag {_flag(key)} needs a value ({_describe(leaves[key][0])})")
    return flags, rest


def preset_name(argv: Sequence[str], presets: Mapping[str, Callable[[], Any]] | None) -> str:
    """The NAME of `--preset NAME` in argv ("" when absent or when the command has no presets); raises on an
    unknown name. Both parsing and --help use it, so the help shows the defaults the run would start from."""
    if presets is None or "--preset" not in argv:
        return ""
    j = list(argv).index("--preset")
    if j + 1 >= len(argv):
        raise ConfigError(f"--preset needs a name; expected one of {sorted(presets)}")
    name = argv[j + 1]
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
    return name


def parse_args(cfg_or_cls: Any, argv: Sequence[str], *, presets: Mapping[str, Callable[[], Any]] | None = None,
               positional: str | None = None, aliases: Mapping[str, str] | None = None) -> Any:
    """Build a config from CLI flags: `--a.b VALUE`, `--a.b=VALUE`, `--flag` (bool), `--no-flag`.

    `--preset NAME` (when `presets` is given) picks the starting config; other flags override it.
    `positional` names a tuple field that collects non-flag arguments (e.g. run directories).
    `aliases` maps a short flag to a dotted field (`beta` -> `qam.beta`): the flat flags of a config whose
    fields moved into a nested section keep working. Hyphens and underscores are the same in flag names.
    """
    base = cfg_or_cls() if isinstance(cfg_or_cls, type) else cfg_or_cls
    argv = list(argv)
    name = preset_name(argv, presets)
    if name:
        base = presets[name]()  # type: ignore[index]
        j = argv.index("--preset")
        del argv[j:j + 2]
    leaves = leaf_fields(type(base))
    flags, rest = _split_argv(argv, leaves, positional, aliases)
    if positional is not None and rest:
        flags[positional] = tuple(rest)  # one item per argument: a path may contain commas (sweep run names)
    return override(base, flags)


def _flag(path: str) -> str:
    """How --help spells a dotted field: with hyphens, as the README does (the parser takes both spellings)."""
    return "--" + path.replace("_", "-")


def _metavar(cls: type, name: str) -> str:
    """A positional field's placeholder: its `metadata["metavar"]`, else NAME... (one or more arguments)."""
    meta = {f.name: f for f in dataclasses.fields(cls)}[name].metadata
    return meta.get("metavar", f"{name.upper()}...")


def help_text(cfg_or_cls: Any, *, prog: str, description: str = "", presets: Mapping[str, Any] | None = None,
              positional: str | None = None, aliases: Mapping[str, str] | None = None, preset: str = "") -> str:
    """CLI help generated from the config's field types, defaults and attribute docstrings.

    `preset` (a key of `presets`) shows that preset's values as the defaults, as `--preset NAME --help` asks.
    """
    base = cfg_or_cls() if isinstance(cfg_or_cls, type) else cfg_or_cls
    if preset:
        base = presets[preset]()  # type: ignore[index]
    leaves = leaf_fields(type(base))
    metavar = _metavar(leaves[positional][1], leaves[positional][2]) if positional in leaves else ""
    usage = f"usage: {prog}" + (f" {metavar}" if metavar else "") + " [--field VALUE ...]"
    lines = [usage, ""]
    if description:
        lines += [description, ""]
    if presets:
        lines += [f"  --preset NAME      one of: {', '.join(sorted(presets))} (other flags override it)"]
        lines += [f"      defaults below are those of --preset {preset}" if preset else
                  "      (`--preset NAME --help` shows that preset's values as the defaults)", ""]
    for path, (tp, owner, name) in leaves.items():
        if presets and path == "preset":
            continue  # `--preset NAME` picks the preset (above): a field of that name only records which one
        value = base
        for part in path.split("."):
            value = getattr(value, part)
        doc = field_docs(owner).get(name, "")
        if path == positional:
            inner = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
            lines += [f"  {metavar} (positional)", f"      {doc} [{_describe(inner)} per argument]"]
            continue
        short = [a for a, target in (aliases or {}).items() if target == path]
        also = f"  (or {_flag(short[0])})" if short else ""
        lines += [f"  {_flag(path)}{also}", f"      {doc} [{_describe(tp)}; default: {value!r}]"]
    return "\n".join(lines)

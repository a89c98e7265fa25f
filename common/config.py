"""Typed dataclass configs, YAML files with ``include:``, strict dotted overrides.

Every entry point declares a root dataclass (nested dataclasses for ``train``, ``model``, ...)
and binds it here; library classes take plain typed arguments, never the config object
(STYLE.md item 3). The flow is::

    defaults (dataclass)  <-  YAML file (+ its includes, deep-merged)  <-  key=value overrides

Every value is type-checked against the dataclass annotation, an unknown key raises a
one-line :class:`ConfigError` naming the file and the key and suggesting the closest valid
key (nanoGPT's "Unknown config key", but with a suggestion).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import re
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "RunConfig",
    "RuntimeConfig",
    "Invocation",
    "load_config",
    "from_dict",
    "to_dict",
    "to_yaml",
    "config_hash",
    "apply_overrides",
    "parse_cli",
]


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")


class ConfigError(ValueError):
    """A config problem, reported as one line that names the source and the key."""


# --------------------------------------------------------------------------------------
# Blocks shared by every entry point's root config.
# --------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """Where a run writes and how it reports. Not part of :func:`config_hash`."""

    dir: str | None = None  # run folder; default runs/<project>/<name or timestamp>
    name: str | None = None  # run name (W&B display name and default folder name)
    group: str | None = None  # W&B group; the reproduction runner sets it to the experiment name
    tags: list[str] = field(default_factory=list)
    wandb_project: str = "cgan-lab"
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    log_every: int = 50  # steps between metric log lines
    sample_every: int = 500  # steps between probe grids / audio
    checkpoint_every: int = 500  # steps between full-state checkpoints
    keep_checkpoints: int = 3  # rotation: newest N are kept


@dataclass
class RuntimeConfig:
    """Device and numerics; see :mod:`common.runtime`."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    deterministic: bool = False  # bitwise-reproducible kernels (slower)
    channels_last: bool = False  # memory format for conv nets (measure before enabling)


# --------------------------------------------------------------------------------------
# YAML loading with includes.
# --------------------------------------------------------------------------------------


def _read_yaml(path: Path, stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and deep-merge its ``include:`` files underneath it (later wins)."""
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{path}: include cycle ({chain})")
    if not path.is_file():
        where = f" (included from {stack[-1]})" if stack else ""
        raise ConfigError(f"{path}: config file not found{where}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} invalid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        if not isinstance(inc, str):
            raise ConfigError(f"{path}: key 'include' must be a path or a list of paths")
        inc_path = (path.parent / inc) if not Path(inc).is_absolute() else Path(inc)
        if not inc_path.is_file():
            raise ConfigError(f"{path}: key 'include': file not found: {inc_path}")
        merged = _deep_merge(merged, _read_yaml(inc_path, (*stack, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------
# Strict, typed construction of dataclasses from plain data.
# --------------------------------------------------------------------------------------


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _unknown_key(source: str, prefix: str, key: str, valid: Sequence[str]) -> ConfigError:
    full = f"{prefix}{key}"
    candidates = [f"{prefix}{v}" for v in valid]
    close = difflib.get_close_matches(full, candidates, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(candidates)})"
    return ConfigError(f"{source}: unknown key '{full}'{hint}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(
        f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{source}: key '{key}' must be one of {choices}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, source, prefix=f"{key}.")
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = args[:1] or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        key_tp, val_tp = args or (Any, Any)
        return {
            _coerce(k, key_tp, f"{key}.{k}", source): _coerce(v, val_tp, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads "1e-4" (no dot) as a string: accept what is plainly a number.
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad


def _build(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    fields = _fields(cls)
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(source, prefix, key, list(fields))
        tp = fields[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            # A section given partially is merged onto the parent's default for it, which
            # may differ from the section class's own defaults (e.g. a root config that
            # logs less often than RunConfig does by default).
            value = _deep_merge(to_dict(_default_of(defaults[key])), value)
        kwargs[key] = _coerce(value, tp, f"{prefix}{key}", source)
    return cls(**kwargs)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Build ``cls`` from nested plain data, strictly (unknown keys and wrong types raise)."""
    return _build(cls, data, source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples) of a dataclass config."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_hash(cfg: Any, exclude: Sequence[str] = ("run",)) -> str:
    """sha256 of the canonical config, ignoring sections that do not affect results.

    ``run`` (folders, logging cadence, W&B names) is excluded by default so that moving a
    run or logging more often does not block ``--resume``.
    """
    data = {k: v for k, v in to_dict(cfg).items() if k not in exclude}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Dotted overrides.
# --------------------------------------------------------------------------------------


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"command line: override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"command line: override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _prefer_text(value: Any, raw: str, tp: Any) -> Any:
    """``name=123`` into a ``str`` field means the text "123", not the int 123."""
    allowed = (
        typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    )
    if str in allowed and not isinstance(value, str) and value is not None:
        if not any(isinstance(value, a) for a in allowed if isinstance(a, type)):
            return raw
    return value


def _is_mapping(tp: Any) -> bool:
    """A ``dict[...]`` annotation (optionally ``| None``)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in typing.get_args(tp) if a is not type(None))
    return tp is dict or typing.get_origin(tp) is dict


def apply_overrides(
    cls: type, data: dict[str, Any], overrides: Sequence[str], source: str = "command line"
) -> dict[str, Any]:
    """Set dotted ``key=value`` overrides into ``data``; keys are checked against ``cls``."""
    data = _deep_merge({}, data)
    for text in overrides:
        path, value = _parse_override(text)
        raw = text.split("=", 1)[1]
        node, node_cls, prefix = data, cls, ""
        for i, part in enumerate(path):
            fields = _fields(node_cls)
            if part not in fields:
                raise _unknown_key(source, prefix, part, list(fields))
            if i == len(path) - 1:
                node[part] = _prefer_text(value, raw, fields[part])
                break
            tp = fields[part]
            if _is_mapping(tp) and i == len(path) - 2:
                # One entry of a dict field (``loss.weights.g/l1=50``): start from the
                # current mapping (or the field's default) so the other entries stay.
                if not isinstance(node.get(part), dict):
                    field = {f.name: f for f in dataclasses.fields(node_cls)}[part]
                    node[part] = dict(_default_of(field) or {})
                node[part][path[-1]] = value
                break
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{source}: key '{prefix}{part}' is a value, not a section")
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: key '{prefix}{part}' must be a mapping")
            node_cls, prefix = tp, f"{prefix}{part}."
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls`` <- YAML ``path`` (with includes) <- ``overrides``; strictly typed."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        data = _read_yaml(Path(path))
        source = str(path)
        from_dict(cls, data, source)  # report file errors against the file, before overrides
    data = apply_overrides(cls, data, overrides)
    return _build(cls, data, source if not overrides else f"{source} + command line")


# --------------------------------------------------------------------------------------
# Command line shared by every entry point.
# --------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """What an entry point was asked to do."""

    config: Any
    config_path: Path | None
    resume: bool
    overrides: list[str]


def parse_cli(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str = "",
    default_config: str | Path | None = None,
) -> Invocation:
    """Parse ``[--config FILE] [--run-dir DIR] [--resume] [--dry-run] [key=value ...]``.

    ``--dry-run`` prints the resolved config as YAML and exits 0. Config errors print one
    line and exit 2 (argparse's convention for bad usage).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides are dotted keys, e.g. train.lr=1e-4 model.d_head=split seed=3.\n"
        "Unknown keys and wrong types are errors. The resolved config is written to\n"
        "<run dir>/config.yaml; --resume refuses a run whose config changed.",
    )
    parser.add_argument("--config", type=Path, default=default_config, help="YAML config file")
    parser.add_argument("--run-dir", type=str, default=None, help="run folder (= run.dir=...)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--dry-run", action="store_true", help="print resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)  # key=value before or after options
    overrides = list(args.overrides)
    if args.run_dir is not None:
        overrides.append(f"run.dir={args.run_dir}")
    try:
        cfg = load_config(cls, args.config, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.dry_run:
        print(to_yaml(cfg), end="")
        raise SystemExit(0)
    return Invocation(cfg, args.config, args.resume, overrides)

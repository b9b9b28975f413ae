"""Stage configuration: frozen dataclasses are the single source of defaults (docs/architecture.md, "Configuration").

Every field is declared with `option(default, help=...)`; the help text becomes the `--help` line of
the generated CLI option. A config is resolved in this order, later wins:

    dataclass defaults < --preset NAME < --config FILE (YAML or TOML) < --set key=value < explicit flags

Unknown keys and values of the wrong type fail with one sentence (with a did-you-mean suggestion).
Fields marked `fingerprint=False` (worker counts, backends) change how a result is computed, not
what it is, so they are left out of the artifact fingerprint. Fields marked
`fingerprint="unless-default"` enter it only when they differ from their default: an option added
later then leaves the artifacts written before it up to date (so changing such a default needs the
stage's version raised).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from wm.errors import ConfigError


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    fingerprint: bool | str = True,
    flag: str | None = None,
) -> Any:
    """Declare a config field with its default, help text, allowed values and fingerprint role.

    `flag` gives a bool field an on/off pair of command-line flags instead of `--name BOOL`, e.g.
    "--dream/--real".
    """
    if fingerprint not in (True, False, "unless-default"):
        raise ValueError(f"fingerprint must be True, False or 'unless-default'; got {fingerprint!r}")
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "fingerprint": fingerprint, "flag": flag}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(default)), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class StageConfig:
    """Base of every stage's frozen config dataclass.

    Subclasses set `PRESETS` (name -> overrides; `tiny`, `demo`, `paper` by convention) and may
    override `validate()` to reject values that have the right type but make no sense.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def validate(self) -> None:
        """Raise ConfigError for values that are well-typed but invalid."""

    def require_at_least(self, minimum: int, *names: str) -> None:
        """Raise ConfigError unless every named field (if set) is at least `minimum`."""
        for name in names:
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ConfigError(f"'{name}' must be at least {minimum}; got {value}.")

    def require_positive(self, *names: str) -> None:
        """Raise ConfigError unless every named field is greater than zero."""
        for name in names:
            if getattr(self, name) <= 0:
                raise ConfigError(f"'{name}' must be positive; got {getattr(self, name)}.")

    def require_fraction(self, *names: str) -> None:
        """Raise ConfigError unless every named field lies strictly between 0 and 1."""
        for name in names:
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be between 0 and 1; got {getattr(self, name)}.")

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-compatible values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def fingerprint_dict(self) -> dict[str, Any]:
        """The fields that determine the output: all but those marked fingerprint=False, and those marked
        "unless-default" only when they differ from their default."""
        result = {}
        for f in dataclasses.fields(self):
            role, value = f.metadata.get("fingerprint", True), getattr(self, f.name)
            if role is True or (role == "unless-default" and value != field_default(f)):
                result[f.name] = value
        return result


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (calling its default_factory if it has one)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def field_types(config_class: type) -> dict[str, Any]:
    """Resolved type annotations of a config dataclass (string annotations evaluated)."""
    return typing.get_type_hints(config_class)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(inner type, True) for Optional[X]; (annotation, False) otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _type_name(annotation: Any) -> str:
    base, optional = unwrap_optional(annotation)
    name = getattr(base, "__name__", str(base))
    return f"{name} or null" if optional else name


def coerce_value(config_class: type, key: str, value: Any, *, from_text: bool) -> Any:
    """Convert `value` to the declared type of field `key`, or raise ConfigError.

    `from_text` is True for `--set key=value` strings, which are parsed (ints, floats, booleans,
    `null`/`none`, JSON for dicts); values from YAML/TOML files are already typed and only checked.
    """
    annotation = field_types(config_class)[key]
    base, optional = unwrap_optional(annotation)
    where = f"'{key}'"
    if from_text and isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        try:
            if base is bool:
                lowered = text.lower()
                if lowered in ("true", "yes", "1", "on"):
                    value = True
                elif lowered in ("false", "no", "0", "off"):
                    value = False
                else:
                    raise ValueError(text)
            elif base is int:
                value = int(text)
            elif base is float:
                value = float(text)
            elif base is dict or typing.get_origin(base) is dict:
                value = json.loads(text)
            else:
                value = text
        except (ValueError, json.JSONDecodeError):
            raise ConfigError(f"{where} must be of type {_type_name(annotation)}, got {value!r}.") from None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} may not be null; it must be of type {_type_name(annotation)}.")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = typing.get_origin(base) or base
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{where} must be of type {_type_name(annotation)}, got {value!r}.")
    if base is float and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}.")
    return value


def check_key(config_class: type, key: str, source: str) -> None:
    names = [f.name for f in dataclasses.fields(config_class)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(names)}."
        raise ConfigError(f"Unknown config key '{key}' in {source}.{hint}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a flat mapping of overrides from a YAML (.yaml/.yml) or TOML (.toml) file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {exc.start} cannot be read); save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"Config file {path} cannot be read ({exc.strerror or exc}).") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"Config file {path} must end in .yaml, .yml or .toml.")
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' own error types differ; all mean "not parseable"
        raise ConfigError(f"Config file {path} could not be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of key: value, not {type(data).__name__}.")
    return data


def parse_set(item: str) -> tuple[str, str]:
    """Split one `--set key=value` argument."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}.")
    key, value = item.split("=", 1)
    return key.strip().replace("-", "_"), value


def resolve_config(
    config_class: type,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    explicit: Mapping[str, Any] | None = None,
) -> Any:
    """Build and validate a config: defaults < preset < config file < --set < explicit values."""
    values: dict[str, Any] = {}
    if preset is not None:
        presets = config_class.PRESETS
        if preset not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"Unknown preset '{preset}' for this stage; known presets: {known}.")
        for key, value in presets[preset].items():
            values[key] = coerce_value(config_class, key, value, from_text=False)
    if config_file is not None:
        for key, value in load_config_file(config_file).items():
            key = key.replace("-", "_")
            check_key(config_class, key, f"config file {config_file}")
            values[key] = coerce_value(config_class, key, value, from_text=False)
    for item in sets:
        key, text = parse_set(item)
        check_key(config_class, key, "--set")
        values[key] = coerce_value(config_class, key, text, from_text=True)
    for key, value in (explicit or {}).items():
        check_key(config_class, key, "the command line")
        values[key] = coerce_value(config_class, key, value, from_text=False)
    config = config_class(**values)
    check_choices(config)
    config.validate()
    return config


def check_choices(config: Any) -> None:
    """Reject values outside a field's declared choices."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise ConfigError(f"'{f.name}' must be one of {allowed}; got {value!r}.")


def config_to_json(config: Any) -> str:
    """The resolved config as canonical JSON (sorted keys), as stored in artifacts."""
    return json.dumps(config.to_dict(), sort_keys=True)

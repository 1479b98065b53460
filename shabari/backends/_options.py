"""Checked reading of backend options (from the gateway's config file), one way for all backends.

Options arrive as an untyped mapping from YAML. Every getter here either returns a value of the
promised type or raises `ConfigError` naming the backend, the option and what was wrong, so a
typo or a bad value stops the gateway at start with one clear line instead of failing later in
the middle of an invocation. `check_keys` catches misspelt option names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, cast

from shabari.core.errors import ConfigError

__all__ = [
    "check_keys",
    "opt_bool",
    "opt_float",
    "opt_int",
    "opt_mapping",
    "opt_str",
    "opt_str_mapping",
]


def _fail(backend: str, key: str, what: str, value: object) -> ConfigError:
    return ConfigError(f"{backend} backend: option {key!r} must be {what}, got {value!r}")


def check_keys(options: Mapping[str, object], known: Collection[str], backend: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{backend} backend: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)}",
            detail=f"known: {', '.join(sorted(known))} (docs/platforms.md)",
        )


def opt_str(options: Mapping[str, object], key: str, backend: str,
            default: str | None = None) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise _fail(backend, key, "a string", value)
    return value


def opt_float(options: Mapping[str, object], key: str, backend: str, default: float, *,
              positive: bool = True) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(backend, key, "a number", value)
    try:
        number = float(value)
    except ValueError:
        raise _fail(backend, key, "a number", value) from None
    if positive and not number > 0:
        raise _fail(backend, key, "a positive number", value)
    return number


def opt_int(options: Mapping[str, object], key: str, backend: str, default: int, *,
            minimum: int = 1) -> int:
    value = options.get(key, default)
    if isinstance(value, bool):
        raise _fail(backend, key, "an integer", value)
    try:
        number = int(value) if isinstance(value, int | str) else None
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise _fail(backend, key, f"an integer >= {minimum}", value)
    return number


def opt_bool(options: Mapping[str, object], key: str, backend: str, default: bool) -> bool:
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise _fail(backend, key, "true or false", value)


def opt_mapping(options: Mapping[str, object], key: str, backend: str) -> Mapping[str, Any]:
    value = options.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(backend, key, "a mapping", value)
    return cast(Mapping[str, Any], value)


def opt_str_mapping(options: Mapping[str, object], key: str, backend: str) -> dict[str, str]:
    """A mapping of names to non-empty strings (e.g. `images: {thumbnail: repo/img:tag}`)."""
    out: dict[str, str] = {}
    for name, value in opt_mapping(options, key, backend).items():
        if not isinstance(value, str) or not value:
            raise _fail(backend, f"{key}.{name}", "a non-empty string", value)
        out[str(name)] = value
    return out

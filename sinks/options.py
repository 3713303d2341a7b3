"""A typed reader for one mapping of the sink YAML file, so every error names its key path.

Secrets are never read from the file: a key ``<name>_env`` names the environment variable that
holds the secret, and the value is wrapped in `Secret` at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.errors import ConfigError


class Secret:
    """A secret value whose repr and str are ``***``, so it cannot leak through logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Options:
    """Reads keys of ``mapping`` (found at ``path`` in ``source``); `done` rejects unknown keys."""

    def __init__(self, mapping: Any, path: str, source: str, env: Mapping[str, str]) -> None:
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, dict):
            raise ConfigError(f"{source}: {path} must be a mapping, got {type(mapping).__name__}")
        self._mapping: dict[str, Any] = mapping
        self._path = path
        self._source = source
        self._env = env
        self._read: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._source}: {self.where(key)}: {message}")

    def where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return key in self._mapping

    def _get(self, key: str, kinds: tuple[type, ...], default: Any) -> Any:
        self._read.add(key)
        value = self._mapping.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {kinds[0].__name__}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {kinds[0].__name__}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key, (str,), default)
        if value is None:
            raise self.error(key, "is required")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        value = self._get(key, (str,), None)
        return None if value is None else str(value)

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = int(self._get(key, (int,), default))
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = float(self._get(key, (int, float), default))
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        return bool(self._get(key, (bool,), default))

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key, (list,), [])
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def items(self, key: str) -> list[Any]:
        """A list value (elements unchecked: the caller reads each with its own `Options`)."""
        return list(self._get(key, (list,), []))

    def string_map(self, key: str) -> dict[str, str]:
        value = self._get(key, (dict,), {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self.error(key, "must map strings to strings")
        return dict(value)

    def section(self, key: str) -> Options:
        self._read.add(key)
        return Options(self._mapping.get(key), self.where(key), self._source, self._env)

    def secret(self, key: str) -> Secret:
        """The secret named by ``<key>_env``: the file holds a variable name, never the value."""
        found = self.optional_secret(key)
        if found is None:
            raise self.error(f"{key}_env", "is required (the name of an environment variable)")
        return found

    def optional_secret(self, key: str) -> Secret | None:
        if key in self._mapping:
            raise self.error(key, f"secrets are not read from the file; set {key}_env to a variable name")
        variable = self.optional_text(f"{key}_env")
        if variable is None:
            return None
        return Secret(self.env_value(f"{key}_env", variable))

    def secret_map(self, key: str) -> dict[str, Secret]:
        """``<key>_env: {name: VARIABLE}`` to ``{name: Secret}``."""
        names = self.string_map(f"{key}_env")
        return {name: Secret(self.env_value(f"{key}_env.{name}", var)) for name, var in names.items()}

    def env_value(self, key: str, variable: str) -> str:
        value = self._env.get(variable)
        if not value:
            raise self.error(key, f"environment variable {variable} is not set or empty")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._mapping) - self._read)
        if unknown:
            where = self._path or "top level"
            raise ConfigError(f"{self._source}: {where}: unknown key(s): {', '.join(unknown)}")

"""Configuration files of the services: reading, validating with messages that name each problem's path, and
re-reading while running.

:class:`ReloadingFile` holds the configuration in force and re-reads the file whenever its modification time
or size changes. The first load raises (a service must not start on a bad file). Later, a file that fails to
load leaves the previous configuration in force and its message in :attr:`ReloadingFile.last_error` (cleared by
the next good load); the same bad file is not re-read until it changes again. Not thread-safe: one event loop
calls :meth:`ReloadingFile.current`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
C = TypeVar("C")
M = TypeVar("M", bound=BaseModel)


class ReloadingFile(Generic[C]):
    """``load(path)`` parses the file (``None``: built-in defaults) and raises ``error`` for a bad one."""

    def __init__(self, path: str | Path | None, load: Callable[[Path | None], C], error: type[Exception],
                 what: str) -> None:
        self.path = Path(path) if path is not None else None
        self.last_error: str | None = None
        self._load, self._error, self._what = load, error, what
        self._stamp = self._stat()
        self._config = load(self.path)

    def current(self) -> C:
        if self.path is None:
            return self._config
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            self._reload()
        return self._config

    def _reload(self) -> None:
        try:
            self._config = self._load(self.path)
        except self._error as exc:
            self.last_error = str(exc)
            log.error("%s not reloaded, the previous one stays in force: %s", self._what, exc)
            return
        self.last_error = None
        log.info("%s reloaded from %s", self._what, self.path)

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size


class PerTenantFile(ReloadingFile[C]):
    """A :class:`ReloadingFile` whose configuration has a ``tenant(tenant_id)`` method."""

    def tenant(self, tenant_id: str) -> Any:
        """The tenant's configuration in force (its own entry, else ``default``, else the built-in defaults)."""
        return self.current().tenant(tenant_id)


class ModelFile(PerTenantFile[M]):
    """A :class:`PerTenantFile` holding one pydantic ``model`` (whose ``tenant(id)`` picks a tenant's entry),
    named ``what`` in messages ("feedback config"). Subclasses set both; ``load`` and ``parse`` read a file or
    a text into the model without the reloading."""

    model: type[M]
    what: str

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(path, self.load, ConfigError, self.what)

    @classmethod
    def load(cls, path: str | Path | None) -> M:
        """The configuration in the file at ``path``; None gives the built-in defaults. ConfigError when the
        file cannot be read or is invalid."""
        return load(path, cls.model, cls.what)

    @classmethod
    def parse(cls, text: str | Mapping[str, Any], source: str | None = None, json_format: bool = False) -> M:
        """The configuration in ``text`` (YAML, JSON with ``json_format``, or already parsed data); ConfigError
        when invalid."""
        return parse(text, cls.model, cls.what, source or f"<{cls.what}>", json_format)


# ---- reading and validating a configuration file -------------------------------------------------------------

Path_ = tuple[str | int, ...]


class ConfigError(ValueError):
    """A configuration file that cannot be read or is invalid; the message lists every problem found."""


class Problems(ValueError):
    """Validation errors about locations below the model that detects them (cross-field checks); raised from
    a pydantic validator, each is reported at its own dotted path."""

    def __init__(self, problems: list[tuple[Path_, str]]) -> None:
        super().__init__("; ".join(f"{dotted(path)}: {message}" for path, message in problems))
        self.problems = problems


def raise_any(problems: list[tuple[Path_, str]]) -> None:
    if problems:
        raise Problems(problems)


def load(path: str | Path | None, model: type[M], what: str) -> M:
    """The configuration in the file at ``path`` (YAML, or JSON when it ends in ``.json``); None gives the
    model's defaults. Raises :class:`ConfigError` naming ``what`` (e.g. "feedback config") and every problem."""
    if path is None:
        return model()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc}") from exc
    return parse(text, model, what, source=str(path), json_format=path.suffix.lower() == ".json")


def parse(text: str | Mapping[str, Any], model: type[M], what: str, source: str, json_format: bool = False) -> M:
    """The configuration in ``text`` (YAML, JSON with ``json_format``, or already parsed data)."""
    if isinstance(text, Mapping):
        data: Any = dict(text)
    else:
        data = _read_json(text, what, source) if json_format else _read_yaml(text, what, source)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{what} {source}: expected a mapping with a 'tenants' key, found {found}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [line for error in exc.errors() for line in _describe(error)]
        raise ConfigError(f"{what} {source} is invalid:\n" + "\n".join(lines)) from exc


class _Loader(yaml.SafeLoader):
    """SafeLoader with only true/false (any case) as booleans, so that ``on``, ``yes`` and ``no`` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _read_yaml(text: str, what: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{what} {source}: not valid YAML{where}: {reason}") from exc


def _read_json(text: str, what: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def _describe(error: Mapping[str, Any]) -> list[str]:
    path, message = tuple(error["loc"]), error["msg"]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, Problems):
        return [f"  {dotted(path + sub)}: {text}" for sub, text in cause.problems]
    if isinstance(cause, ValueError):
        message = str(cause)
    return [f"  {dotted(path)}: {message}"]


def dotted(path: Sequence[str | int]) -> str:
    """``tenants.acme.triggers.follow_up`` / ``caps[0].max``: where a problem is, as written in the file."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"

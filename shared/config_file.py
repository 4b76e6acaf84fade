"""A configuration file a service re-reads while running.

:class:`ReloadingFile` holds the configuration in force and re-reads the file whenever its modification time
or size changes. The first load raises (a service must not start on a bad file). Later, a file that fails to
load leaves the previous configuration in force and its message in :attr:`ReloadingFile.last_error` (cleared by
the next good load); the same bad file is not re-read until it changes again. Not thread-safe: one event loop
calls :meth:`ReloadingFile.current`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)
C = TypeVar("C")


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

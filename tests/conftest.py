"""Session-wide real infrastructure; see tests/support/infra.py for where it comes from."""

from __future__ import annotations

import pytest

from tests.support import infra as infra_mod


@pytest.fixture(scope="session")
def infra():
    started = infra_mod.start()
    yield started
    if callable(started.stop):
        started.stop()

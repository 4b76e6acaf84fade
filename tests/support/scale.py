"""How large the long-running tests are.

``TOUCHPOINT_TEST_SCALE=full`` (``make test-full``) runs them at full scale: the notification ``kill -9`` test
with 2,000 sends and up to 5 kills, the feedback load test with 50,000 responses, 2 minutes of overload at twice
the capacity, and the whole fault suite
(as ``TOUCHPOINT_FAULTS=full`` does). Otherwise they run at a smaller scale that checks the same properties
with the same assertions (what ``make test`` and CI run).
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

FULL = os.environ.get("TOUCHPOINT_TEST_SCALE") == "full"


def scaled(quick: T, full: T) -> T:
    """``full`` with ``TOUCHPOINT_TEST_SCALE=full``, else ``quick``."""
    return full if FULL else quick

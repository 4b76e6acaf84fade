import asyncio

import pytest

from shared.loops import together

pytestmark = pytest.mark.unit


async def test_steps_run_concurrently():
    started: list[str] = []
    both = asyncio.Event()

    async def step(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 1)  # each waits for the other to have started

    await together(step("a"), step("b"))
    assert sorted(started) == ["a", "b"]


async def test_the_first_failure_cancels_the_others_and_is_raised_as_itself():
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError("broker went away")

    with pytest.raises(ConnectionResetError, match="broker went away"):
        await together(slow(), failing())
    assert cancelled.is_set()

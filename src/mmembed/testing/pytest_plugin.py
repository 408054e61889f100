"""pytest fixtures for the emulator, registered through the ``pytest11`` entry point ``mmembed``.

* ``mmembed_emulator`` — a started :class:`~mmembed.testing.Emulator` with default settings, stopped after the
  test;
* ``mmembed_emulator_factory`` — call it with Emulator keyword arguments to get more, differently configured,
  started emulators; all are stopped after the test.

Both serve fake vectors (it is an emulator, not the real models).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .emulator import Emulator

__all__ = ["mmembed_emulator", "mmembed_emulator_factory"]


@pytest.fixture
def mmembed_emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """A function ``(**emulator_kwargs) -> started Emulator``; every emulator it made stops at teardown."""
    made: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        emulator = Emulator(**kwargs).start()
        made.append(emulator)
        return emulator

    yield make
    for emulator in made:
        emulator.stop()


@pytest.fixture
def mmembed_emulator(mmembed_emulator_factory: Callable[..., Emulator]) -> Emulator:
    """A started offline Emulator (default settings, any non-empty key accepted), stopped after the test."""
    return mmembed_emulator_factory()

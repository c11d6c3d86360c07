"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from sandbox_emulator import Emulator

# --- emulators ----------------------------------------------------------------
# Short delays so tests stay fast; a test about a delay passes its own value.
FAST_EMULATOR_OPTIONS = {
    "containers": 3,
    "usage_delay": 0.05,
    "libraries_delay": 0.05,
    "overload_wait": 0.5,
    "execute_timeout": 5.0,
}


@contextmanager
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """The one harness for emulators in the tests: `make(api=2, containers=1, ...)`
    starts an emulator on a free loopback port with short delays (any Emulator
    keyword overrides them); every emulator it made is stopped on the way out."""
    started: list[Emulator] = []

    def make(**kwargs: object) -> Emulator:
        emulator = Emulator(**{**FAST_EMULATOR_OPTIONS, "port": 0, **kwargs})
        emulator.start()
        started.append(emulator)
        return emulator

    try:
        yield make
    finally:
        for emulator in started:
            emulator.stop()


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: `make_emulator(api=2, containers=1, ...)`, see `emulator_factory`;
    its emulators stop when the test ends."""
    with emulator_factory() as make:
        yield make


@pytest.fixture(scope="module")
def make_module_emulator() -> Iterator[Callable[..., Emulator]]:
    """`make_emulator` for module-scoped fixtures (a stack shared by a module's
    tests); its emulators stop when the module's tests are done."""
    with emulator_factory() as make:
        yield make


@pytest.fixture
def emulator_v2(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A running 2.x emulator with short delays."""
    return make_emulator(api=2)


@pytest.fixture
def emulator_v3(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A running 3.x emulator with short delays."""
    return make_emulator(api=3)

"""The heavy imports run with the cyclic collector paused, and what they made is frozen."""

import gc
import sys

import pytest

from pipeline.commands.startup import imports_uncollected


@pytest.fixture
def collector_state():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def _unloaded(name: str) -> str:
    """A stdlib module's name, unloaded if an earlier test loaded it: its import is a first one."""
    sys.modules.pop(name, None)
    return name


def test_an_import_runs_without_the_collector_and_leaves_it_on_with_the_imports_frozen(collector_state):
    gc.enable()
    gc.unfreeze()
    module = _unloaded("colorsys")
    with imports_uncollected():
        paused = not gc.isenabled()
        __import__(module)

    assert paused
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # never scanned again by later collections


def test_nothing_is_frozen_when_the_modules_were_loaded_already(collector_state):
    gc.enable()
    gc.unfreeze()
    garbage = [[]]
    garbage[0].append(garbage)  # an earlier run's cycle: must stay collectable
    del garbage
    with imports_uncollected():
        import json  # noqa: F401  (loaded already)

    assert gc.get_freeze_count() == 0
    assert gc.collect() > 0


def test_a_collector_switched_off_by_the_embedding_program_stays_off(collector_state):
    gc.disable()
    module = _unloaded("colorsys")
    with imports_uncollected():
        __import__(module)

    assert not gc.isenabled()

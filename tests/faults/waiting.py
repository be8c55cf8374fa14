"""Waiting for a condition in a fault test, without sleeping longer than needed."""

import time


def wait_until(predicate, timeout: float) -> bool:
    """Polls `predicate` every 20 ms; False if it is still false after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

"""A command's start-up: Beam's imports without Python's cyclic garbage collector scanning them.

Importing Beam (and pyarrow, boto3, protobuf...) makes about 300,000 objects that live as
long as the process. With the collector on, every collection while they are made scans them
all again: a 10k-row export took 1.3 s with them scanned, 1.0 s without (docs/performance.md).
So the heavy imports run with the collector paused, and what they made is then
frozen (`gc.freeze`: never scanned again, as it is never freed) before the collector resumes.
The export itself runs with the collector on, as any Python program, however long it takes.
"""

import contextlib
import gc
import sys

__all__ = ["imports_uncollected"]


@contextlib.contextmanager
def imports_uncollected():
    """Runs the block (imports) with the collector paused; freezes what it made, if it imported anything.

    Nothing is frozen when the modules were already loaded (a second run of a schedule): the
    objects alive then include an earlier run's garbage, which must stay collectable. A
    collector that was off already (an embedding program's choice) stays off.
    """
    if not gc.isenabled():
        yield
        return
    loaded = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > loaded:
            gc.freeze()
        gc.enable()

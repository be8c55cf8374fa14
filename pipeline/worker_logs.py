"""Keeps Beam's local worker processes from flooding stderr with their own log lines.

The multi-processing DirectRunner's workers inherit stderr and log at INFO (start-up notices,
"harness exiting", missing optional GCP libraries) whatever the pipeline options say. While
the pipeline runs, stderr goes through a pipe that drops those lines and passes on the rest,
so the user sees our progress and any real error.
"""

import contextlib
import os
import re
import sys
import threading

NOISE = re.compile(rb"^(DEBUG|INFO|WARNING):(apache_beam|root|__main__|botocore)[.:]|Worker: severity: (INFO|WARN|DEBUG)")


@contextlib.contextmanager
def filtered_stderr():
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end held by us; workers have exited
        forwarder.join(timeout=5)
        os.close(original)


def _forward(read_end: int, target: int) -> None:
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if not NOISE.search(line):
                os.write(target, line)

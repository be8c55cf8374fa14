"""Living with the multi-processing DirectRunner's worker processes on this machine.

Its workers inherit stderr and log at INFO (start-up notices, "harness exiting", missing
optional GCP libraries) whatever the pipeline options say: `filtered_stderr` drops those lines
while the pipeline runs and passes on the rest. It also drops a worker's error log whose
traceback ends in one of our own errors (an invalid row, a bad file): the launcher reports
those in one line, and a traceback would bury it. And when a run is interrupted, its workers
must stop before staging is cleaned, or a bundle in flight could write a shard after the
cleanup: `stop_children` kills them.
"""

import contextlib
import os
import re
import signal
import sys
import threading

NOISE = re.compile(
    rb"^(DEBUG|INFO|WARNING):(apache_beam|root|__main__|botocore)[.:]|Worker: severity: (INFO|WARN|DEBUG)"
)
WORKER_ERROR = re.compile(rb"^ERROR:apache_beam[.:]")
RECORD = re.compile(rb"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):|^krux-export:")
OUR_ERROR = re.compile(rb"\bpipeline\.errors\.\w+: ")


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
        os.dup2(original, 2)  # our last write end of the pipe; the workers have exited
        forwarder.join(timeout=5)
        os.close(original)


def _forward(read_end: int, target: int) -> None:
    error_log = []  # a worker's error record and the traceback lines after it, until the next record

    def end_error_log():
        if error_log and not any(OUR_ERROR.search(line) for line in error_log):
            os.write(target, b"".join(error_log))
        error_log.clear()

    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if error_log and RECORD.match(line):
                end_error_log()
            if error_log or WORKER_ERROR.match(line):
                error_log.append(line)
            elif not NOISE.search(line):
                os.write(target, line)
        end_error_log()


def stop_children() -> list[int]:
    """SIGKILLs every descendant process of this one (Linux /proc); returns their pids."""
    children = _descendants(os.getpid())
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    return children


def _descendants(root: int) -> list[int]:
    parents = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        # pid (comm) state ppid ...: comm may hold spaces, so split after ")".
                        parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found

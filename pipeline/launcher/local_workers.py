"""Living with the multi-processing DirectRunner's worker processes on this machine.

Its workers inherit stderr and log at INFO (start-up notices, "harness exiting", missing
optional GCP libraries) whatever the pipeline options say: `filtered_stderr` drops those lines
while the pipeline runs and passes on the rest. It also drops a worker's error log whose
traceback ends in one of our own errors (an invalid row, a bad file): the launcher reports
those in one line, and a traceback would bury it. And when a run is interrupted, its workers
must stop before staging is cleaned, or a bundle in flight could write a shard after the
cleanup: `stop_children` kills them; what they print while they die (their control channel
gone) is dropped, since the stop is what the user asked for.
"""

import contextlib
import os
import re
import signal
import sys
import threading

NOISE = re.compile(
    rb"^(DEBUG|INFO):(transforms|pipeline)[.:]|"  # the workers' own notes; the launcher says what counts
    rb"^(DEBUG|INFO|WARNING):(apache_beam|root|__main__|botocore)[.:]|Worker: severity: (INFO|WARN|DEBUG)"
)
WORKER_ERROR = re.compile(rb"^ERROR:apache_beam[.:]")
RECORD = re.compile(rb"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):|^krux-export:")
OUR_ERROR = re.compile(rb"\bpipeline\.errors\.\w+: ")


@contextlib.contextmanager
def filtered_stderr():
    """Filters this process's stderr (fd 2, which the workers inherit) while the block runs."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    silenced = threading.Event()  # set: nothing more of the workers' output is passed on
    forwarder = threading.Thread(target=_forward, args=(read_end, original, silenced), daemon=True)
    forwarder.start()
    try:
        with _silenced_on_stop(silenced):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # our last write end of the pipe; the workers have exited
        forwarder.join(timeout=5)
        os.close(original)


@contextlib.contextmanager
def _silenced_on_stop(silenced: threading.Event):
    """SIGTERM or Ctrl-C silences the workers first, then does what it did before.

    Beam closes its workers' channels while the signal's exception unwinds through it, before
    the launcher can react, and the workers print tracebacks as they lose the channel.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def on_stop(signum, frame):
        silenced.set()
        handler = previous[signum]
        if callable(handler):
            return handler(signum, frame)
        signal.signal(signum, handler)  # SIG_DFL or SIG_IGN: as it was, for this signal too
        os.kill(os.getpid(), signum)

    for signum in previous:
        signal.signal(signum, on_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _forward(read_end: int, target: int, silenced: threading.Event) -> None:
    error_log = []  # a worker's error record and the traceback lines after it, until the next record

    def end_error_log():
        if error_log and not silenced.is_set() and not any(OUR_ERROR.search(line) for line in error_log):
            os.write(target, b"".join(error_log))
        error_log.clear()

    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if silenced.is_set():
                continue  # drained, so no writer blocks on a full pipe
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

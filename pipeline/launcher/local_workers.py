"""Living with the multi-processing DirectRunner's worker processes on this machine.

Its workers inherit stderr and log at INFO (start-up notices, "harness exiting", missing
optional GCP libraries) whatever the pipeline options say: `filtered_stderr` drops Beam's own
lines while the pipeline runs and passes on the rest (our modules' warnings included). Beam's
error log of a failed bundle (a traceback) is dropped too: the launcher reports the failure in
one line, and shows the worker's traceback with `--verbose`, which keeps every line. And when
a run is interrupted, its workers must stop before staging is cleaned, or a bundle in flight
could write a shard after the cleanup: `stop_children` kills them; what they print while they
die (their control channel gone) is dropped, since the stop is what the user asked for.
And the workers start with allocators that keep the memory they free (`worker_allocators`).
"""

import contextlib
import ctypes
import os
import re
import signal
import sys
import threading

BEAM_NOISE = re.compile(
    rb"^(DEBUG|INFO|WARNING):(apache_beam|root|__main__|botocore)[.:]|Worker: severity: (INFO|WARN|DEBUG)"
)
BEAM_ERROR_LOG = re.compile(rb"^ERROR:apache_beam[.:]|^Traceback \(most recent call last\):")
"""A failed bundle: Beam's error record, or the traceback its SDK harness prints bare."""
RECORD = re.compile(rb"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):|^krux-export:")
OUR_RECORD = re.compile(rb"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):(?:pipeline|transforms)(?:\.\w+)*:")
"""A worker's log line from our packages (Python's default format): shown as the launcher's are."""

LARGE_BLOCK_BYTES = 1 << 30
WORKER_ALLOCATOR_ENV = {
    # glibc: blocks up to LARGE_BLOCK_BYTES (numpy's arrays of a batch, up to hundreds of MB)
    # come from the heap and stay there once freed, instead of being mapped and unmapped each time.
    "GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={LARGE_BLOCK_BYTES}:glibc.malloc.trim_threshold={LARGE_BLOCK_BYTES}",
    # mimalloc (Arrow's memory pool): freed pages are kept for the next batch, not returned.
    "MIMALLOC_PURGE_DELAY": "-1",
}
"""Every batch allocates and frees the same few hundred MB: returned to the kernel each time,
they come back as page faults (a 10M-row grouped export: 835k of them and 9.3 s of system
CPU; 156k and 5.5 s with these). A worker's peak memory is its bound either way."""
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter

FORWARDER_JOIN_S = 5.0
"""How long the launcher waits for the workers' last lines once the pipeline is done."""


@contextlib.contextmanager
def filtered_stderr(*, keep_all: bool = False):
    """Filters this process's stderr (fd 2, which the workers inherit) while the block runs.

    `keep_all` (`--verbose`): every line is passed on, until a stop silences the workers.
    """
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    silenced = threading.Event()  # set: nothing more of the workers' output is passed on
    # The forwarder writes to a descriptor of its own, which it closes: nothing here can close
    # it (or let the number be reused) while the forwarder may still write.
    forwarder = threading.Thread(
        target=_forward, args=(read_end, os.dup(original), silenced, keep_all), daemon=True
    )
    forwarder.start()
    try:
        with _silenced_on_stop(silenced):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # fd 2 no longer holds the pipe: the forwarder ends when the workers' ends close
        os.close(original)
        forwarder.join(timeout=FORWARDER_JOIN_S)
        silenced.set()  # a worker still holding the pipe past that: its lines are no longer ours to show


@contextlib.contextmanager
def worker_allocators():
    """`WORKER_ALLOCATOR_ENV` in this process's environment while the block starts workers.

    A setting of the user's wins: a variable already set is left alone, and a glibc tunable
    already named in `GLIBC_TUNABLES` keeps its value.
    """
    settings = dict(WORKER_ALLOCATOR_ENV)
    if not _glibc_takes_large_mmap_threshold():
        del settings["GLIBC_TUNABLES"]
    saved = {name: os.environ.get(name) for name in settings}
    for name, value in settings.items():
        current = saved[name]
        if current is None:
            os.environ[name] = value
        elif name == "GLIBC_TUNABLES":
            os.environ[name] = _with_tunables(current, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _glibc_takes_large_mmap_threshold() -> bool:
    """Whether the C library is a glibc that takes an mmap threshold of LARGE_BLOCK_BYTES.

    Older glibc refuses any above 32 MiB, and then the trim threshold alone would pin the mmap
    threshold at 128 KiB: more page faults, not fewer. Asking changes this process's own
    threshold the same way, which is all it does (the launcher allocates little).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES) == 1


def _with_tunables(current: str, defaults: str) -> str:
    """`current` GLIBC_TUNABLES with those of `defaults` it does not name added."""
    named = {item.split("=", 1)[0] for item in current.split(":") if item}
    added = [item for item in defaults.split(":") if item.split("=", 1)[0] not in named]
    return ":".join([current, *added]) if added else current


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


def _forward(read_end: int, target: int, silenced: threading.Event, keep_all: bool) -> None:
    in_error_log = False  # inside a failed bundle's error log or traceback, until the next record

    try:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if silenced.is_set():
                    continue  # drained, so no writer blocks on a full pipe
                if keep_all:
                    os.write(target, line)
                    continue
                if RECORD.match(line) or BEAM_ERROR_LOG.match(line):
                    in_error_log = bool(BEAM_ERROR_LOG.match(line))
                if not in_error_log and not BEAM_NOISE.search(line):
                    os.write(target, OUR_RECORD.sub(b"krux-export: ", line, count=1))
    finally:
        os.close(target)


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

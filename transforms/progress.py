"""`ProgressChannel`: rows read and shards written, from Beam workers to the launcher, live.

The local runner's workers are other processes, and Beam hands their metrics to the launcher
only when the pipeline ends. So each worker appends one small record per batch read and per
shard written to a file of its own in a local directory the launcher chose, and the launcher
sums the files while it waits. Only for runners whose workers share the launcher's file
system; elsewhere the channel is None and the launcher polls Beam's metrics if it can.
Progress is best effort: a record that cannot be written is dropped, never an export failure.
"""

import dataclasses
import os
import uuid

__all__ = ["Progress", "ProgressChannel", "ProgressReader", "ProgressWriter"]

_SUFFIX = ".progress"


@dataclasses.dataclass(frozen=True)
class Progress:
    rows: int = 0
    shards: int = 0


@dataclasses.dataclass(frozen=True)
class ProgressChannel:
    """A local directory of progress files: picklable, so DoFns carry it to their workers."""

    directory: str

    def writer(self) -> "ProgressWriter":
        return ProgressWriter(self.directory)

    def reader(self) -> "ProgressReader":
        return ProgressReader(self.directory)


class ProgressWriter:
    """Appends records to a file of its own (one per DoFn instance: no two writers share one)."""

    def __init__(self, directory: str):
        self._path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex}{_SUFFIX}")
        self._fd: int | None = None
        self._broken = False

    def add(self, *, rows: int = 0, shards: int = 0) -> None:
        if self._broken:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self._fd, b"%d %d\n" % (rows, shards))  # one short write: never torn
        except OSError:
            self._broken = True  # the launcher's directory is gone (or elsewhere): stop trying

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ProgressReader:
    """Sums every writer's records; each call reads only what was appended since the last."""

    def __init__(self, directory: str):
        self._directory = directory
        self._offsets: dict[str, int] = {}
        self._rows = 0
        self._shards = 0

    def read(self) -> Progress:
        try:
            names = [name for name in os.listdir(self._directory) if name.endswith(_SUFFIX)]
        except OSError:
            names = []
        for name in names:
            self._read_file(name)
        return Progress(self._rows, self._shards)

    def _read_file(self, name: str) -> None:
        offset = self._offsets.get(name, 0)
        try:
            with open(os.path.join(self._directory, name), "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a record still being written waits
        for record in complete.splitlines():
            rows, shards = record.split()
            self._rows += int(rows)
            self._shards += int(shards)
        self._offsets[name] = offset + len(complete)

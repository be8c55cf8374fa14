"""`WriteRejects`: invalid rows as JSON lines, written by the workers as parts beside the target.

Rejects hold personal data, so they go where `--rejects` says (the user's own storage, with
the standard credential chain) and never to the partner's bucket. Each bundle writes parts of
about `PART_TARGET_BYTES` under `{file}.parts/{run_id}/` beside the file the user named; the
publishing step (`transforms.write`) assembles the parts named in the run's report into that one
file (server-side on S3) with `assemble_rejects`, before the day's object is published.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.errors import UsageError
from pipeline.krux.rejects import reject_lines
from pipeline.krux.report import RunReport, StagedObject
from pipeline.storage.s3 import storage_error
from pipeline.storage.stores import ObjectInfo, ObjectStore, StoreSpec
from transforms.shards import lines_buffer

__all__ = ["PART_TARGET_BYTES", "RejectsTarget", "WriteRejects", "assemble_rejects"]

PART_TARGET_BYTES = 32 * 1024 * 1024
"""A part rolls over past this size: above S3's 5 MiB part minimum, so that full parts are
copied server-side when the file is assembled; memory per worker is about this much."""

PARTS_SUFFIX = ".parts/"
PARTIAL_SUFFIX = ".partial"
"""Ends the name of a local rejects file being assembled; the next run removes leftovers."""
_COPY_CHUNK_BYTES = 8 * 1024**2


@dataclasses.dataclass(frozen=True)
class RejectsTarget:
    """The rejects file `name` in the folder `store_spec`, and this run's parts beside it.

    Parts go under `{name}.parts/{run_id}/`: every run's parts under one folder per file, so
    the next run finds and removes what a killed run left without listing anything else.
    """

    store_spec: StoreSpec
    name: str
    run_id: str

    @classmethod
    def for_run(cls, uri: str, run_id: str) -> RejectsTarget:
        """The target for `--rejects URI`: a file, local or `s3://`, never a folder."""
        if uri.endswith("/") or (not uri.startswith("s3://") and os.path.isdir(uri)):
            raise UsageError(f"--rejects {uri}: name a file (e.g. {uri.rstrip('/')}/rejects.jsonl), not a folder")
        if uri.startswith("s3://"):
            if "/" not in uri[len("s3://") :]:
                raise UsageError(f"--rejects {uri}: expected s3://bucket/key, a file in the bucket")
            folder, _, name = uri.rpartition("/")
            return cls(StoreSpec.from_uri(folder + "/"), name, run_id)
        folder, name = os.path.split(os.path.abspath(uri))
        return cls(StoreSpec.from_uri(folder), name, run_id)

    @property
    def uri(self) -> str:
        return self.store_spec.uri(self.name)

    @property
    def parts_root(self) -> str:
        """The folder holding every run's parts for this file (key prefix, ending in "/")."""
        return self.name + PARTS_SUFFIX

    @property
    def parts(self) -> str:
        """This run's parts (key prefix, ending in "/")."""
        return f"{self.parts_root}{self.run_id}/"


class WriteRejects(beam.PTransform):
    """Writes `InvalidRows` as JSON-lines parts; outputs a `RunReport` naming each part and its size."""

    def __init__(self, target: RejectsTarget, *, part_bytes: int | None = None):
        super().__init__()
        self._fn = _WriteRejectsFn(target, part_bytes or PART_TARGET_BYTES)

    def expand(self, invalid_rows):
        return invalid_rows | "PutRejectParts" >> beam.ParDo(self._fn)


class _WriteRejectsFn(beam.DoFn):
    def __init__(self, target: RejectsTarget, part_bytes: int):
        self._target = target
        self._part_bytes = part_bytes

    def setup(self):
        self._store = self._target.store_spec.open()

    def start_bundle(self):
        self._blocks, self._size = [], 0

    def process(self, invalid):
        for block in reject_lines(invalid.table, invalid.batch, invalid.reasons):
            data = lines_buffer(block)
            self._blocks.append(data)
            self._size += len(data)
        if self._size >= self._part_bytes:
            yield self._put_part()

    def finish_bundle(self):
        if self._blocks:
            yield WindowedValue(self._put_part(), 0, [GlobalWindow()])

    def _put_part(self) -> RunReport:
        data = b"".join(self._blocks)
        key = f"{self._target.parts}part-{uuid.uuid4().hex}.jsonl"
        self._store.put(key, data)
        self._blocks, self._size = [], 0
        return RunReport(rejects_parts=[StagedObject(key, len(data))])


def assemble_rejects(target: RejectsTarget, store: ObjectStore, parts: list[ObjectInfo]) -> int:
    """Writes the rejects file from the run's parts, in any order; returns its size.

    On S3 the parts become the file by a multipart upload of server-side copies (parts under
    S3's 5 MiB minimum pass through here, as for the day's object). A local file is created
    readable by its owner only (mode 0600). No parts: an empty file, so that the file never
    shows an earlier run's rows.
    """
    if target.store_spec.kind == "local":
        return _write_private(Path(store.uri(target.name)), [Path(store.uri(p.key)) for p in parts])
    if not sum(p.size for p in parts):
        store.put(target.name, b"")
        return 0
    return store.compose(target.name, parts)


def _write_private(path: Path, sources: list[Path]) -> int:
    """Concatenates `sources` into `path` with mode 0600, replacing it atomically."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            for source in sources:
                with open(source, "rb") as part:
                    shutil.copyfileobj(part, file, _COPY_CHUNK_BYTES)
            size = file.tell()
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise storage_error("writing", str(path), error) from error
        raise
    return size

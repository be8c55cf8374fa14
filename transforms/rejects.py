"""`WriteRejects`: invalid rows as JSON lines, written by the workers as parts beside the target.

Rejects hold personal data, so they go where `--rejects` says (the user's own storage, with
the standard credential chain) and never to the partner's bucket. Each bundle writes parts of
about `PART_TARGET_BYTES` under `{file}.parts/{run_id}/` beside the file the user named; the
launcher assembles the parts named in the manifest into that one file (server-side on S3).
"""

from __future__ import annotations

import dataclasses
import os
import uuid

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.errors import UsageError
from pipeline.krux.rejects import reject_lines
from pipeline.krux.report import RunReport, StagedObject
from pipeline.storage.stores import StoreSpec
from transforms.shards import lines_buffer

__all__ = ["PART_TARGET_BYTES", "RejectsTarget", "WriteRejects"]

PART_TARGET_BYTES = 32 * 1024 * 1024
"""A part rolls over past this size: above S3's 5 MiB part minimum, so that full parts are
copied server-side when the file is assembled; memory per worker is about this much."""

PARTS_SUFFIX = ".parts/"


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

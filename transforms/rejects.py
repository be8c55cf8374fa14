"""`WriteRejects`: invalid rows as JSON lines (table, reason, the row) for the user to inspect.

Rejects hold personal data, so they go where `--rejects` says (the user's own storage, with
the standard credential chain) and never to the partner's bucket. Each bundle writes one part
beside the target; the launcher joins the parts into the one file the user named.
"""

import json
import os
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.errors import StorageError
from pipeline.krux.report import RunReport

__all__ = ["WriteRejects", "join_rejects", "parts_dir"]


def parts_dir(rejects_uri: str, run_id: str) -> str:
    return f"{rejects_uri}.parts-{run_id}/"


class WriteRejects(beam.PTransform):
    """Writes `InvalidRows` as JSON-lines parts; outputs a `RunReport` naming each part."""

    def __init__(self, rejects_uri: str, run_id: str):
        super().__init__()
        self._fn = _WriteRejectsFn(parts_dir(rejects_uri, run_id))

    def expand(self, invalid_rows):
        return invalid_rows | "PutRejects" >> beam.ParDo(self._fn)


class _WriteRejectsFn(beam.DoFn):
    def __init__(self, directory: str):
        self._directory = directory

    def start_bundle(self):
        self._lines = []

    def process(self, invalid):
        # Per-row Python is fine here: only invalid rows come this way.
        for row, reason in zip(invalid.batch.to_pylist(), invalid.reasons.to_pylist()):
            record = {"table": invalid.table, "reason": reason, "row": row}
            self._lines.append(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def finish_bundle(self):
        if not self._lines:
            return
        path = f"{self._directory}part-{uuid.uuid4().hex}.jsonl"
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write("".join(self._lines).encode("utf-8"))
        yield WindowedValue(RunReport(rejects_parts=[path]), 0, [GlobalWindow()])


def join_rejects(rejects_uri: str, run_id: str, parts: list[str]) -> None:
    """Joins the workers' parts into the one file the user named, then removes the parts.

    Runs in the launcher: rejects are the invalid rows only, small next to the export.
    """
    if not parts and rejects_uri.startswith("s3://"):
        return  # no rejects, and Beam's S3 writer cannot complete a zero-byte object
    try:
        with FileSystems.create(rejects_uri, compression_type=CompressionTypes.UNCOMPRESSED) as target:
            for part in sorted(parts):
                with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as source:
                    while chunk := source.read(8 * 1024 * 1024):
                        target.write(chunk)
        if parts:
            FileSystems.delete(parts)
        directory = parts_dir(rejects_uri, run_id)
        if not rejects_uri.startswith("s3://") and os.path.isdir(directory):
            os.rmdir(directory)
    except Exception as error:
        raise StorageError(f"cannot write rejects to {rejects_uri}: {error}") from error

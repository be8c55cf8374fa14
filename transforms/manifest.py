"""`CombineReports` and `WriteManifest`: every step's `RunReport` into one manifest in staging.

Counts travel as data, not runner metrics, so every runner (and every retry) reports exactly
what the published shards hold: only the shards named in the manifest are merged.
"""

import apache_beam as beam

from pipeline.krux.report import RunReport

__all__ = ["CombineReports", "WriteManifest"]


class _MergeReportsFn(beam.CombineFn):
    def create_accumulator(self):
        return RunReport()

    def add_input(self, accumulator, report):
        return accumulator.merge(report)

    def merge_accumulators(self, accumulators):
        merged = RunReport()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class CombineReports(beam.PTransform):
    """Many partial `RunReport`s (from any number of PCollections) into one."""

    def expand(self, reports):
        return (
            reports
            | "FlattenReports" >> beam.Flatten()
            | "MergeReports" >> beam.CombineGlobally(_MergeReportsFn())
        )


class WriteManifest(beam.PTransform):
    """Writes the run's one `RunReport` as JSON to `key` in the export's store."""

    def __init__(self, store_spec, key: str):
        super().__init__()
        self._store_spec = store_spec
        self._key = key

    def expand(self, report):
        return report | "PutManifest" >> beam.ParDo(_PutManifestFn(self._store_spec, self._key))


class _PutManifestFn(beam.DoFn):
    def __init__(self, store_spec, key):
        self._store_spec = store_spec
        self._key = key

    def process(self, report):
        self._store_spec.open().put(self._key, report.to_json())
        yield self._key

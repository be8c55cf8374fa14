"""`CombineReports`: every step's `RunReport` into the run's one report, on one worker.

Counts travel as data, not runner metrics, so every runner (and every retry) reports exactly
what the published shards hold: only the shards named in the report are merged
(`transforms.write`'s publishing step reads it once every shard is written).
"""

import apache_beam as beam

from pipeline.krux.report import RunReport

__all__ = ["CombineReports"]


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

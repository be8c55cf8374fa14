"""Your own Beam pipeline, ending in `WriteToKrux`: Parquet tables in, the day's Krux file out.

Rows are read with Beam's own Parquet IO (any IO will do: BigQuery, JDBC, Kafka, Iceberg; a
PCollection of dicts or of Arrow record batches); `WriteToKrux` checks and writes them as
`krux-export run` does and publishes the day's object from inside the pipeline, so this runs
on Dataflow or Flink as it runs here. Its one output element is the run's summary.

    python examples/beam_pipeline.py --input 'warehouse/activate_to_krux/segment_*.parquet' \\
        --connection my_salesforce_dmp_connector --date 2026-11-28 --runner=FnApiRunner

Flags other than this script's own go to Beam (`--runner`, `--project`, `--setup_file`, ...).
"""

import argparse
import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import WriteToKrux


def build_pipeline(argv: list[str] | None = None) -> beam.Pipeline:
    """The pipeline, built from command-line arguments and not run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="Parquet files: a path or glob, local or s3://")
    parser.add_argument("--connection", help="a connection in connections.yml (resolved on each worker)")
    parser.add_argument("--date", required=True, help="the export's day, YYYY-MM-DD")
    parser.add_argument("--output-root", help="write the day folders here instead of the partner's bucket")
    parser.add_argument("--group-by-user", action="store_true", help="one line per user")
    parser.add_argument("--skip-invalid-records", action="store_true", help="drop and count invalid rows")
    known, beam_args = parser.parse_known_args(argv)

    p = beam.Pipeline(options=PipelineOptions(beam_args))
    (
        p
        | "ReadAudience" >> beam.io.ReadFromParquetBatched(known.input)  # Arrow tables, one per row group
        | "WriteToKrux"
        >> WriteToKrux(
            connection=known.connection,
            date=known.date,
            output_root=known.output_root,
            group_by_user=known.group_by_user,
            skip_invalid_records=known.skip_invalid_records,
        )
        | "LogSummary" >> beam.LogElements(prefix="krux-export summary: ", level=logging.INFO)
    )
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO)
    build_pipeline(argv).run().wait_until_finish()


if __name__ == "__main__":
    main()

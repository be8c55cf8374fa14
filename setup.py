"""krux-export: segment tables to Salesforce DMP (Krux) daily files, on Apache Beam.

This is also the file Beam workers install from (`--setup_file ./setup.py`).
"""

from setuptools import find_packages, setup

setup(
    name="krux-export",
    version="0.1.0",
    description="Export audience segment tables to Salesforce DMP (Krux) as one daily S3 file",
    python_requires=">=3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    install_requires=[
        "apache-beam[aws]>=2.60",
        "pyarrow>=15",
        "numpy>=1.24",
        "boto3>=1.34",
        "PyYAML>=6.0",
        # Cron semantics (names, steps, lists, DST) are subtle; croniter is the maintained
        # reference implementation that schedulers such as Airflow build on.
        "croniter>=2.0",
        # igzip (ISA-L): standard gzip members, several times faster than zlib at its default
        # level (benchmarks/README.md, Findings: gzip exports against DuckDB's zlib); the shard
        # writer compresses in its own DoFn with it.
        "isal>=1.6",
        # The embedded SQL engine for --query: streams its result as Arrow batches and spills
        # past its memory limit. 2.0 for `to_arrow_reader`; it needs no pyarrow pin (pip gives
        # 2.0.1, tested with pyarrow 25).
        "duckdb>=2.0",
        # The progress bar on a terminal: pure Python, no dependencies of its own, and it
        # handles unknown totals, rates, remaining time and terminal widths.
        "tqdm>=4.66",
        # Delta Lake tables (SPEC §9): delta-rs reads the log, so only the latest version's files
        # are read (an overwrite or delete leaves old files on disk), with deletion vectors and a
        # scan for column-mapped tables. One 52 MB wheel, no JVM.
        "deltalake>=1.0",
        # Iceberg tables (SPEC §9): catalogs configured as pyiceberg users do; `sql-sqlite` for
        # SQL catalogs, `pyarrow` for its scan (delete files applied). REST, Glue and Hive
        # catalogs need their own extras (`pyiceberg[glue]`...), installed beside us.
        "pyiceberg[sql-sqlite,pyarrow]>=0.9",
        # Warehouses through ADBC (SPEC §9): one Arrow-native API, results as Arrow batches.
        "adbc-driver-manager>=1.0",
        # PostgreSQL through libpq, bundled in its 4 MB wheel.
        "adbc-driver-postgresql>=1.0",
        # Snowflake, BigQuery and Arrow Flight SQL (Dremio...): Go drivers in self-contained
        # wheels (28, 18 and 15 MB); each returns result partitions that workers read in parallel.
        "adbc-driver-snowflake>=1.0",
        "adbc-driver-bigquery>=1.0",
        "adbc-driver-flightsql>=1.0",
    ],
    extras_require={
        # mkdocs: tests/docs builds the documentation site with --strict, so CI needs it too.
        # pgserver: a real PostgreSQL server from a wheel (no root, no Docker) for the warehouse tests.
        "test": ["pytest>=8", "moto[server]>=5.0", "hypothesis>=6.100", "mkdocs>=1.6", "mkdocs-material>=9.5",
                 "pgserver>=0.1.4"],
        # The documentation site (docs/, mkdocs.yml): `mkdocs serve` or `mkdocs build --strict`.
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5"],
        # The benchmark's profiler, and Polars for its second baseline (benchmarks/polars_export.py,
        # the strongest single-machine peer, issue 20); never needed to export.
        "benchmark": ["py-spy>=0.3", "polars>=1.0"],
    },
    entry_points={"console_scripts": ["krux-export=pipeline.commands.cli:main"]},
)

"""Airflow DAGs that export Krux files: the day's file for the DAG's logical date, and hourly appends.

krux-export's exit codes tell Airflow what to do: 0 done; 2 (configuration or schema error)
and 3 (invalid records, empty result, or a drop in lines larger than the job's `max_drop`)
need a person, so the task fails without retrying; 4 (storage failure) and 1 (anything else)
are retried. The run summary goes to XCom.

Retries are safe in both DAGs. The daily export replaces the same day's file. The hourly one
appends (`append: true` in its job file) and passes `--append-key`, a key that stays the same
across the tries of one task in one DAG run: a retry replaces its own earlier append, even one
that was published before the try failed, and the day never gets an hour's lines twice.
"""

import datetime
import json
import re
import subprocess

from airflow.decorators import dag, task
from airflow.exceptions import AirflowException, AirflowFailException

JOB_FILE = "/opt/krux/activate_to_krux.yml"  # replace mode, max_drop: 50
APPEND_JOB_FILE = "/opt/krux/hourly_topups.yml"  # its own export_name, append: true
NEEDS_A_PERSON = {2: "configuration or schema error", 3: "invalid records, empty result or refused drop"}


def append_key(run_id: str, task_id: str, map_index: int = -1) -> str:
    """krux-export's `--append-key` for one task of one DAG run: the same on every try.

    A key is `[A-Za-z0-9_.-]+`, so the run id's other characters become `_`
    (`scheduled__2026-11-28T10:00:00+00:00` → `scheduled__2026-11-28T10_00_00_00_00`).
    The try number stays out of it: that is what makes a retry replace its own file.
    """
    key = f"{run_id}-{task_id}" + (f"-{map_index}" if map_index >= 0 else "")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def run_krux_export(argv: list[str]) -> dict:
    """Runs krux-export; returns its summary, or raises as the exit code says (retry or not)."""
    done = subprocess.run(["krux-export", "run", *argv], stdout=subprocess.PIPE, text=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])  # always the last stdout line
    if done.returncode in NEEDS_A_PERSON:
        raise AirflowFailException(f"{NEEDS_A_PERSON[done.returncode]}: {summary['error']}")
    if done.returncode:
        raise AirflowException(f"exit {done.returncode}: {summary['error']}")  # retried
    return summary


@dag(
    schedule="10 0 * * *",
    start_date=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc),
    catchup=True,  # backfills export each missed day into its own day folder
    max_active_runs=1,  # two runs of one export for one day would race for the same key
    default_args={"retries": 3, "retry_delay": datetime.timedelta(minutes=10)},
)
def krux_export_daily():
    @task
    def export_to_salesforce_dmp(ds=None) -> dict:
        return run_krux_export(["--job", JOB_FILE, "--date", ds])

    export_to_salesforce_dmp()


@dag(
    schedule="5 * * * *",
    start_date=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": datetime.timedelta(minutes=5)},
)
def krux_export_hourly_appends():
    @task
    def append_to_the_days_files(ds=None, run_id=None, ti=None) -> dict:
        key = append_key(run_id, ti.task_id, ti.map_index)
        return run_krux_export(["--job", APPEND_JOB_FILE, "--date", ds, "--append", "--append-key", key])

    append_to_the_days_files()


krux_export_daily()
krux_export_hourly_appends()

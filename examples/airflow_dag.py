"""An Airflow DAG that exports the day's Krux file for the DAG's logical date.

krux-export's exit codes tell Airflow what to do: 0 done; 2 (configuration or schema error)
and 3 (invalid records or empty result) need a person, so the task fails without retrying;
4 (storage failure) and 1 (anything else) are retried. A retried or re-run task replaces the
same day's file, so retries and backfills are safe. The run summary goes to XCom.
"""

import datetime
import json
import subprocess

from airflow.decorators import dag, task
from airflow.exceptions import AirflowException, AirflowFailException

JOB_FILE = "/opt/krux/activate_to_krux.yml"
NEEDS_A_PERSON = {2: "configuration or schema error", 3: "invalid records or empty result"}


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
        done = subprocess.run(
            ["krux-export", "run", "--job", JOB_FILE, "--date", ds], stdout=subprocess.PIPE, text=True
        )
        summary = json.loads(done.stdout.strip().splitlines()[-1])  # always the last stdout line
        if done.returncode in NEEDS_A_PERSON:
            raise AirflowFailException(f"{NEEDS_A_PERSON[done.returncode]}: {summary['error']}")
        if done.returncode:
            raise AirflowException(f"exit {done.returncode}: {summary['error']}")  # retried
        return summary

    export_to_salesforce_dmp()


krux_export_daily()

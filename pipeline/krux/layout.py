"""Where things go in the partner's bucket: pure functions, no I/O.

Keys here are relative to the export's root: `{client_name}/` in the bucket, or the
`--output-root` itself. Under it, `uploads/{date}/` (just `{date}/` under an output root)
holds what Salesforce reads and `_staging/{export_name}/{run_id}/` holds shards.
"""

import datetime
import secrets

STAGING_DIR = "_staging/"


def new_run_id(now: datetime.datetime) -> str:
    """`20261128T093000Z-3f9a`: sorts by start time; the suffix keeps two runs apart."""
    utc = now.astimezone(datetime.timezone.utc)
    return f"{utc:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def file_suffix(compression: str) -> str:
    return ".txt.gz" if compression == "gzip" else ".txt"


def final_name(export_name: str, compression: str, append_as: str | None = None) -> str:
    """The day's object: fixed in replace mode; in append mode `{export_name}-{append_as}`.

    `append_as` is the run id (one object per run) or the run's `--append-key` (one object
    per key, so an orchestrator's retry replaces its own earlier append).
    """
    stem = export_name if append_as is None else f"{export_name}-{append_as}"
    return stem + file_suffix(compression)


def day_dir(uploads_dir: str, date: datetime.date) -> str:
    return f"{uploads_dir}{date.isoformat()}/"


def staging_dir(export_name: str, run_id: str | None = None) -> str:
    """Outside `uploads/`, so Salesforce never picks up a part."""
    base = f"{STAGING_DIR}{export_name}/"
    return base if run_id is None else f"{base}{run_id}/"


def belongs_to_export(file_name: str, export_name: str) -> bool:
    """Whether a day-folder object is one of this export's: replaced by the next replace run.

    `{export_name}.txt`, `{export_name}.txt.gz` and `{export_name}-*` from append
    runs. Export names hold no `-`, so `{export_name}-*` never matches another export's object.
    """
    return file_name in (f"{export_name}.txt", f"{export_name}.txt.gz") or file_name.startswith(
        f"{export_name}-"
    )

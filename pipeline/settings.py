"""`RunSettings`: the one object a run needs, from command-line flags or a job file."""

import dataclasses
import datetime

DEFAULT_BUCKET = "krux-partners"
DEFAULT_EXPORT_NAME = "first_party_segment"
COMPRESSIONS = ("gzip", "none")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything SPEC §7's `run` takes. Holds names and paths, never a secret."""

    sources: tuple[str, ...] = ()
    database: str | None = None
    table_prefix: str = "segment_"
    user_column: str = "user_id"
    segment_column: str = "td_segment"
    segment_attribute: str = "segment"
    connection: str | None = None
    client_name: str | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    date: datetime.date | None = None
    append: bool = False
    skip_invalid_records: bool = False
    rejects: str | None = None
    group_by_user: bool = False
    compression: str = "gzip"
    export_name: str = DEFAULT_EXPORT_NAME
    output_root: str | None = None
    allow_empty: bool = False
    summary_json: str | None = None
    beam_args: tuple[str, ...] = ()

    def replace(self, **changes) -> "RunSettings":
        return dataclasses.replace(self, **changes)

"""The run summary of SPEC §7, as typed values that serialize to its JSON line.

Built by the launcher (or `WriteToKrux`), printed by the commands, stored in the history and
sent in notifications: every reader goes through these fields, never a dict's keys by hand.
"""

import dataclasses

__all__ = ["FailedSummary", "Summary"]


@dataclasses.dataclass(frozen=True)
class Summary:
    """A succeeded run: what it read, rejected, wrote and replaced."""

    run_id: str
    date: str  # YYYY-MM-DD, the export's day
    object_uri: str
    bytes: int
    rows_read: dict[str, int]  # table -> rows read, every table (empty ones included)
    lines_written: int
    invalid: dict[str, int]  # reason -> rows
    replaced: tuple[str, ...]  # URIs of the objects removed
    duration_s: float
    users_on_several_lines: int = 0  # ungrouped: users with more than one line; 0 when grouped
    snapshots: dict[str, str] = dataclasses.field(default_factory=dict)  # lake table -> version read (§9)
    status = "succeeded"
    exit_code = 0

    def to_json(self) -> dict:
        """SPEC §7's object, keys in its order; `snapshots` and `users_on_several_lines` only when there are any."""
        line = {
            "status": self.status,
            "run_id": self.run_id,
            "date": self.date,
            "object_uri": self.object_uri,
            "bytes": self.bytes,
            "rows_read": {"total": sum(self.rows_read.values()), "tables": dict(self.rows_read)},
            **({"snapshots": dict(self.snapshots)} if self.snapshots else {}),
            "lines_written": self.lines_written,
            "invalid": dict(sorted(self.invalid.items())),
            "replaced": list(self.replaced),
            "duration_s": self.duration_s,
        }
        if self.users_on_several_lines:
            line["users_on_several_lines"] = self.users_on_several_lines
        return line

    @classmethod
    def from_json(cls, line: dict) -> "Summary":
        """The summary `to_json` wrote (the publishing step's, read back by the launcher)."""
        return cls(
            run_id=line["run_id"],
            date=line["date"],
            object_uri=line["object_uri"],
            bytes=line["bytes"],
            rows_read=dict(line["rows_read"]["tables"]),
            lines_written=line["lines_written"],
            invalid=dict(line["invalid"]),
            replaced=tuple(line["replaced"]),
            duration_s=line["duration_s"],
            users_on_several_lines=line.get("users_on_several_lines", 0),
            snapshots=dict(line.get("snapshots", {})),
        )


@dataclasses.dataclass(frozen=True)
class FailedSummary:
    """A run that exited non-zero: the code, the one-line reason, and the run and day if known."""

    exit_code: int
    error: str
    run_id: str | None = None
    date: str | None = None
    status = "failed"

    def to_json(self) -> dict:
        known = {"run_id": self.run_id, "date": self.date}
        return {"status": self.status, "exit_code": self.exit_code, "error": self.error,
                **{key: value for key, value in known.items() if value is not None}}

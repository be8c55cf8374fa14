"""`RunReport`: what a run read, rejected and wrote, carried as data to the launcher.

Counts travel through the pipeline as elements and are combined into one manifest in
staging, rather than read from runner metrics, so every runner (and every retry) reports
exactly what the published shards hold: only the shards named in the manifest are merged.
"""

import dataclasses
import json
from typing import NamedTuple

__all__ = ["RunReport", "StagedObject"]


class StagedObject(NamedTuple):
    """A shard or rejects part written to staging; `[key, bytes]` in the manifest's JSON."""

    key: str
    bytes: int


@dataclasses.dataclass
class RunReport:
    rows: dict[str, int] = dataclasses.field(default_factory=dict)  # table -> rows read
    invalid: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> rows
    shards: list[StagedObject] = dataclasses.field(default_factory=list)
    lines: int = 0
    rejects_parts: list[StagedObject] = dataclasses.field(default_factory=list)
    users_on_several_lines: int = 0  # ungrouped: users with more than one line
    users_on_several_lines_estimated: bool = False  # counted on a sample of users (very many users)

    def merge(self, other: "RunReport") -> "RunReport":
        for table, count in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + count
        for reason, count in other.invalid.items():
            self.invalid[reason] = self.invalid.get(reason, 0) + count
        self.shards.extend(other.shards)
        self.lines += other.lines
        self.rejects_parts.extend(other.rejects_parts)
        self.users_on_several_lines += other.users_on_several_lines
        self.users_on_several_lines_estimated |= other.users_on_several_lines_estimated
        return self

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "RunReport":
        fields = json.loads(data)
        for name in ("shards", "rejects_parts"):
            fields[name] = [StagedObject(key, size) for key, size in fields.get(name, [])]
        return cls(**fields)

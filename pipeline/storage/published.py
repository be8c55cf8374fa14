"""What an export last published: its newest object and the line count recorded with it.

Every published object carries its line count in its metadata (`x-amz-meta-line-count` on
S3; the sidecar of a local store), so `--max-drop` can compare a run with the last object
without reading it. The last object is the export's newest in the run's day folder or, when
that day has none yet, in the latest earlier day folder that has one: day folders are listed
newest first, and each is read until one holds the export.
"""

import dataclasses
import datetime
import re
from collections.abc import Callable

from pipeline.storage.stores import ObjectStore

__all__ = ["LINE_COUNT", "PublishedObject", "last_published", "line_count_metadata"]

LINE_COUNT = "line-count"
"""The metadata name of an object's line count: the header `x-amz-meta-line-count` on S3."""

_DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclasses.dataclass(frozen=True)
class PublishedObject:
    """An object of the export: its key, and its line count (None: published without one)."""

    key: str
    lines: int | None


def line_count_metadata(lines: int) -> dict[str, str]:
    """The metadata a published object carries."""
    return {LINE_COUNT: str(lines)}


def last_published(store: ObjectStore, day_dir: str, is_export_object: Callable[[str], bool]) -> PublishedObject | None:
    """The export's newest object in `day_dir` (`.../YYYY-MM-DD/`) or in the latest earlier day folder beside it.

    `is_export_object(name)` says whether an object's name in a day folder is one of the
    export's. Newest means last written (S3's LastModified, then the key): in append mode that
    is the day's latest append. Folders not named as days, and days after `day_dir`'s, are
    not looked at. None when no day up to `day_dir`'s holds the export.
    """
    uploads_dir, day = _split_day_dir(day_dir)
    days = sorted((name for name in store.folders(uploads_dir) if _is_day(name) and name <= day), reverse=True)
    for name in days:
        folder = f"{uploads_dir}{name}/"
        objects = [
            info
            for info in store.list(folder)
            if "/" not in info.key[len(folder) :] and is_export_object(info.key[len(folder) :])
        ]
        if objects:
            newest = max(objects, key=lambda info: (info.modified or 0.0, info.key))
            return PublishedObject(newest.key, _line_count(store.metadata(newest.key)))
    return None


def _split_day_dir(day_dir: str) -> tuple[str, str]:
    parent, _, day = day_dir.rstrip("/").rpartition("/")
    if not _is_day(day):
        raise ValueError(f"not a day folder: {day_dir!r}")
    return (parent + "/" if parent else ""), day


def _is_day(name: str) -> bool:
    if not _DAY_FOLDER.fullmatch(name):
        return False
    try:
        datetime.date.fromisoformat(name)
    except ValueError:
        return False
    return True


def _line_count(metadata: dict[str, str]) -> int | None:
    value = metadata.get(LINE_COUNT, "")
    return int(value) if value.isascii() and value.isdigit() else None

"""Turns a run's shards into the day's one object, replacing or appending.

The new object is complete before anything is removed: a replace run deletes the export's
other day-folder objects only after its own multipart upload has completed, so a day that
had the export never ends up without it. Every object records its line count in its metadata;
with `--max-drop`, a run with too few lines against the last object is refused first.
"""

import functools
import gzip
import logging

from pipeline.errors import ShrunkenAudienceError
from pipeline.krux import layout
from pipeline.krux.drop import drop_percent, drop_refusal
from pipeline.storage.published import last_published, line_count_metadata

log = logging.getLogger("krux_export")

# An empty gzip stream with a fixed header (mtime 0), for `--allow-empty`.
EMPTY_GZIP = gzip.compress(b"", mtime=0)


def sweep_leftovers(store, *, export_name: str, day_dir: str, current_staging: str) -> list[str]:
    """Removes what killed runs of this export left: their staging and open uploads on its keys."""
    staging_root = layout.staging_dir(export_name)
    stale = [o.key for o in store.list(staging_root) if not o.key.startswith(current_staging)]
    store.delete(stale)
    aborted = store.abort_uploads(
        day_dir + export_name, only=lambda key: _is_export_object(key, day_dir, export_name)
    )
    return stale + aborted


def publish(store, *, shards, final_key: str, day_dir: str, export_name: str, append: bool, lines: int,
            max_drop: float | None = None, on_complete=None):
    """Merges `shards` (`lines` lines) into `final_key`; in replace mode, removes the export's other objects.

    Returns the published object's size and the keys it replaced. `on_complete` is called as
    soon as the new object is in place, before anything is removed. With `max_drop`, raises
    `ShrunkenAudienceError` before anything is written if the lines dropped too far.
    """
    refuse_a_shrunken_audience(store, lines=lines, max_drop=max_drop, day_dir=day_dir, export_name=export_name)
    size = store.compose(final_key, shards, metadata=line_count_metadata(lines))
    if on_complete:
        on_complete()
    return size, ([] if append else remove_superseded(store, day_dir, export_name, final_key))


def publish_empty(store, *, final_key: str, compression: str, day_dir: str, export_name: str, append: bool,
                  max_drop: float | None = None, on_complete=None):
    """`--allow-empty` with zero lines: an empty object (0 bytes, or an empty gzip stream)."""
    refuse_a_shrunken_audience(store, lines=0, max_drop=max_drop, day_dir=day_dir, export_name=export_name)
    data = EMPTY_GZIP if compression == "gzip" else b""
    store.put(final_key, data, metadata=line_count_metadata(0))
    if on_complete:
        on_complete()
    return len(data), ([] if append else remove_superseded(store, day_dir, export_name, final_key))


def refuse_a_shrunken_audience(store, *, lines: int, max_drop: float | None, day_dir: str, export_name: str) -> None:
    """With `max_drop`, raises `ShrunkenAudienceError` if `lines` are too few against the last object.

    The last object is the export's newest in the day folder or the latest earlier one
    (`last_published`). One published without a line count (before counts were recorded) is
    not compared: a warning says so, and the next run compares with this one's object.
    """
    if max_drop is None:
        return
    previous = last_published(store, day_dir, functools.partial(layout.belongs_to_export, export_name=export_name))
    if previous is None:
        log.info("--max-drop: nothing published earlier for export %s to compare with", export_name)
        return
    uri = store.uri(previous.key)
    if previous.lines is None:
        log.warning("--max-drop not applied: %s has no line count (published before line counts were "
                    "recorded); the next run compares with this run's object", uri)
        return
    refusal = drop_refusal(lines, previous.lines, max_drop, uri)
    if refusal:
        raise ShrunkenAudienceError(refusal)
    drop = drop_percent(lines, previous.lines)
    compared = f"{float(drop):.0f}% fewer than" if drop else "not fewer than"
    log.info("--max-drop %g: %s lines, %s the %s of %s", max_drop, f"{lines:,}", compared, f"{previous.lines:,}", uri)


def remove_superseded(store, day_dir: str, export_name: str, final_key: str) -> list[str]:
    superseded = [
        o.key for o in store.list(day_dir) if o.key != final_key and _is_export_object(o.key, day_dir, export_name)
    ]
    store.delete(superseded)
    return superseded


def remove_staging(store, staging: str) -> None:
    store.delete([o.key for o in store.list(staging)])


def _is_export_object(key: str, day_dir: str, export_name: str) -> bool:
    name = key[len(day_dir) :]
    return key.startswith(day_dir) and "/" not in name and layout.belongs_to_export(name, export_name)

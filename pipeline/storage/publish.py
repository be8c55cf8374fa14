"""Turns a run's shards into the day's one object, replacing or appending (SPEC §4).

The new object is complete before anything is removed: a replace run deletes the export's
other day-folder objects only after its own multipart upload has completed, so a day that
had the export never ends up without it. Every object records its line count in its metadata;
with `--max-drop`, a run with too few lines against the last object is refused first.
`WriteToKrux`'s publishing step calls these on one worker once every shard is written; the
launcher calls the sweep before a run.
"""

import gzip

from pipeline.krux import layout
from pipeline.storage.max_drop import refuse_a_shrunken_audience
from pipeline.storage.published import line_count_metadata

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


def remove_superseded(store, day_dir: str, export_name: str, final_key: str) -> list[str]:
    superseded = [
        o.key for o in store.list(day_dir) if o.key != final_key and _is_export_object(o.key, day_dir, export_name)
    ]
    store.delete(superseded)
    return superseded


def remove_staging(store, staging: str, *, keep: str | None = None) -> None:
    """Removes the run's staging; with `keep`, not the objects under that prefix."""
    store.delete([o.key for o in store.list(staging) if keep is None or not o.key.startswith(keep)])


def _is_export_object(key: str, day_dir: str, export_name: str) -> bool:
    name = key[len(day_dir) :]
    return key.startswith(day_dir) and "/" not in name and layout.belongs_to_export(name, export_name)

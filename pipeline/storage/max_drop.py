"""`--max-drop`: a run with too few lines against the export's last published object is refused.

Called by `publish` right before the merge (and by `publish_empty`), so nothing is written or
removed when it refuses: the lookup is `pipeline.storage.published.last_published`, the
decision and its words `pipeline.krux.drop.drop_refusal`.
"""

import functools
import logging

from pipeline.errors import ShrunkenAudienceError
from pipeline.krux import layout
from pipeline.krux.drop import drop_percent, drop_refusal
from pipeline.storage.published import last_published

__all__ = ["refuse_a_shrunken_audience"]

log = logging.getLogger(__name__)


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

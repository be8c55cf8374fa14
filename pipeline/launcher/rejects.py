"""The rejects file (`--rejects`): its parts swept before a run, removed on failure.

Workers write parts beside the file and the publishing step assembles them into the one file
the user named, before the day's object is published (see `transforms.rejects`): a run that
exits 0 has written both, and a failed run leaves neither its rejects file nor its parts
(rejects hold personal data).
"""

import glob
from pathlib import Path

from pipeline.storage.s3 import storage_error
from pipeline.storage.stores import ObjectStore
from transforms.rejects import PARTIAL_SUFFIX, RejectsTarget

__all__ = ["prepare", "remove", "remove_parts"]


def prepare(target: RejectsTarget, store: ObjectStore) -> list[str]:
    """Removes what earlier runs left beside the file (their parts, an unfinished assembly) and,
    for a local file, makes the parts folder readable by its owner only. Returns what it removed."""
    stale = [o.key for o in store.list(target.parts_root) if not o.key.startswith(target.parts)]
    store.delete(stale)
    if target.store_spec.kind != "local":
        return stale + store.abort_uploads(target.name, only=lambda key: key == target.name)
    path = Path(store.uri(target.name))
    partial = sorted(path.parent.glob(f".{glob.escape(path.name)}.*{PARTIAL_SUFFIX}"))
    try:
        for leftover in partial:
            leftover.unlink(missing_ok=True)
        parts = Path(store.uri(target.parts_root))
        parts.mkdir(mode=0o700, parents=True, exist_ok=True)
        parts.chmod(0o700)  # mkdir's mode is masked by the umask, and the folder may be older
    except OSError as error:
        raise storage_error("preparing the rejects file", str(path), error) from error
    return stale + [str(p) for p in partial]


def remove_parts(target: RejectsTarget, store: ObjectStore) -> None:
    store.delete([o.key for o in store.list(target.parts)])


def remove(target: RejectsTarget, store: ObjectStore) -> None:
    """Removes the rejects file: a run that failed after writing it must not leave it behind."""
    store.delete([target.name])

"""The rejects file (`--rejects`): its parts swept before a run, assembled after it, removed on failure.

Workers write parts beside the file (see `transforms.rejects`); here the launcher turns the
parts the manifest names into the one file the user named, before the day's object is
published: a run that exits 0 has written both, and a failed run leaves neither its rejects
file nor its parts (rejects hold personal data).
"""

import glob
import os
import secrets
import shutil
from pathlib import Path

from pipeline.storage.s3 import storage_error
from pipeline.storage.stores import ObjectInfo, ObjectStore
from transforms.rejects import RejectsTarget

__all__ = ["prepare", "publish", "remove", "remove_parts"]

_PARTIAL_SUFFIX = ".partial"
_COPY_CHUNK_BYTES = 8 * 1024**2


def prepare(target: RejectsTarget, store: ObjectStore) -> list[str]:
    """Removes what earlier runs left beside the file (their parts, an unfinished assembly) and,
    for a local file, makes the parts folder readable by its owner only. Returns what it removed."""
    stale = [o.key for o in store.list(target.parts_root) if not o.key.startswith(target.parts)]
    store.delete(stale)
    if target.store_spec.kind != "local":
        return stale + store.abort_uploads(target.name, only=lambda key: key == target.name)
    path = Path(store.uri(target.name))
    partial = sorted(path.parent.glob(f".{glob.escape(path.name)}.*{_PARTIAL_SUFFIX}"))
    try:
        for leftover in partial:
            leftover.unlink(missing_ok=True)
        parts = Path(store.uri(target.parts_root))
        parts.mkdir(mode=0o700, parents=True, exist_ok=True)
        parts.chmod(0o700)  # mkdir's mode is masked by the umask, and the folder may be older
    except OSError as error:
        raise storage_error("preparing the rejects file", str(path), error) from error
    return stale + [str(p) for p in partial]


def publish(target: RejectsTarget, store: ObjectStore, parts: list[ObjectInfo]) -> int:
    """Writes the rejects file from the run's parts, in any order; returns its size.

    On S3 the parts become the file by a multipart upload of server-side copies (parts under
    S3's 5 MiB minimum pass through here, as for the day's object). A local file is created
    readable by its owner only (mode 0600). No parts: an empty file, so that the file never
    shows an earlier run's rows.
    """
    if target.store_spec.kind == "local":
        return _write_private(Path(store.uri(target.name)), [Path(store.uri(p.key)) for p in parts])
    if not sum(p.size for p in parts):
        store.put(target.name, b"")
        return 0
    return store.compose(target.name, parts)


def remove_parts(target: RejectsTarget, store: ObjectStore) -> None:
    store.delete([o.key for o in store.list(target.parts)])


def remove(target: RejectsTarget, store: ObjectStore) -> None:
    """Removes the rejects file: a run that failed after writing it must not leave it behind."""
    store.delete([target.name])


def _write_private(path: Path, sources: list[Path]) -> int:
    """Concatenates `sources` into `path` with mode 0600, replacing it atomically."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{_PARTIAL_SUFFIX}")
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            for source in sources:
                with open(source, "rb") as part:
                    shutil.copyfileobj(part, file, _COPY_CHUNK_BYTES)
            size = file.tell()
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise storage_error("writing", str(path), error) from error
        raise
    return size

"""Users on several lines: counted without grouping, for the ungrouped mode's warning.

Salesforce takes a user's later line as replacing the earlier one, so without
`--group-by-user` a user on two lines keeps only one line's segments. Counting those users
exactly would take a shuffle of every user id; instead each user id becomes a 64-bit key
(`user_keys`, a few numpy passes per batch), and a `RepeatSketch` keeps, per key, whether it
was seen more than once. A sketch keeps at most `capacity` keys: below that the count is
exact; above it, it keeps the smallest keys only (a uniform sample of users, every line of a
sampled user counted) and scales the count up.
"""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEFAULT_CAPACITY", "RepeatSketch", "several_lines_warning", "user_keys"]

DEFAULT_CAPACITY = 2**18
"""Keys a sketch keeps (2 MiB): exact up to 262,144 distinct users, beyond that estimated from
a sample of that many users, within about half a percent. Exact counting of 10M rows (3.3M
users) cost 23% more CPU and twice the memory of the whole export; this costs about 4%."""

_KEY_SPACE = 2**64
_WORD_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's fmix64 finaliser
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)
_ONE = np.uint64(1)
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)

LONG_ID_BYTES = 256
"""Ids longer than this (rare) are hashed one by one with BLAKE2b, so that a hostile 10 MB id
cannot make the word loop below run a million times over the whole batch."""


def several_lines_warning(users: int, estimated: bool = False) -> str:
    """The warning of an ungrouped run with users on several lines, pointing to `--group-by-user`."""
    about = "about " if estimated else ""
    if estimated:  # three significant digits: the sample does not know more
        users = round(users, -max(0, len(str(users)) - 3))
    verb = "user is" if users == 1 else "users are"
    return (
        f"{about}{users:,} {verb} on more than one line: Salesforce takes a user's later line as replacing "
        "the earlier one, so only one of each such user's lines counts; --group-by-user writes one line "
        "per user with all of its segments and attributes"
    )


def user_keys(users: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An even 64-bit key per user id (63 bits of hash): equal ids, equal keys, in every process.

    The lowest bit is left free for `RepeatSketch`'s mark.

    The id's UTF-8 bytes are read eight at a time straight from the Arrow buffers (one numpy
    pass per 8 bytes of the longest id, not per byte), mixed with the length, and finished
    with MurmurHash3's fmix64. Nulls count as "" (valid rows have none).
    """
    users = pc.cast(pc.fill_null(users, ""), pa.large_string())
    if isinstance(users, pa.ChunkedArray):
        users = users.combine_chunks()
    count = len(users)
    if count == 0:
        return np.empty(0, np.uint64)
    offsets = np.frombuffer(users.buffers()[1], np.int64)[users.offset : users.offset + count + 1]
    starts, lengths = offsets[:-1], np.diff(offsets)
    data = users.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    padded = np.zeros(len(raw) + LONG_ID_BYTES + 8, np.uint8)  # every 8-byte read below stays inside
    padded[: len(raw)] = raw
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))

    keys = lengths.astype(np.uint64) * _WORD_MIX
    longest = int(min(lengths.max(), LONG_ID_BYTES))
    for start in range(0, longest, 8):
        left = np.clip(lengths - start, 0, 8).astype(np.uint64)
        mask = np.where(left >= 8, _ALL_BITS, (_ONE << (left * np.uint64(8))) - _ONE)
        mixed = (keys ^ (words[starts + start] & mask)) * _WORD_MIX
        mixed ^= mixed >> _SHIFT
        keys = np.where(left > 0, mixed, keys)  # an id's key must not depend on the batch's longest id
    for row in np.flatnonzero(lengths > LONG_ID_BYTES):
        digest = hashlib.blake2b(bytes(raw[starts[row] : starts[row] + lengths[row]]), digest_size=8).digest()
        keys[row] = np.uint64(int.from_bytes(digest, "little"))
    keys ^= keys >> _SHIFT
    keys *= _FMIX_C1
    keys ^= keys >> _SHIFT
    keys *= _FMIX_C2
    keys ^= keys >> _SHIFT
    return keys & ~_ONE


class RepeatSketch:
    """Which user keys were seen more than once: exact up to `capacity` keys, sampled beyond.

    Keys are stored sorted, each with its lowest bit set when seen more than once. New keys
    wait in `_pending` and are sorted into the stored ones once they are as many, so the work
    stays proportional to the keys added. When more than `capacity` keys
    are stored, only the `capacity` smallest are kept and keys at or above the next one
    (`bound`) are dropped from then on: every key below `bound` is counted fully, a uniform
    sample of a `bound / 2^64` share of all users.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.bound = _KEY_SPACE  # keys at or above it are not kept
        self._stored = np.empty(0, np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_count = 0

    def add(self, keys: np.ndarray) -> "RepeatSketch":
        """Counts one line for each key (from `user_keys`)."""
        if self.bound < _KEY_SPACE:
            keys = keys[keys < np.uint64(self.bound)]
        if len(keys):
            self._pending.append(keys)
            self._pending_count += len(keys)
            if self._pending_count >= max(len(self._stored), self.capacity // 4):
                self._fold()
        return self

    def merge(self, other: "RepeatSketch") -> "RepeatSketch":
        """Adds what `other` saw (each of its keys keeps its seen-more-than-once mark)."""
        other._fold()
        self.bound = min(self.bound, other.bound)
        self._pending.append(other._stored)
        self._pending_count += len(other._stored)
        self._fold()
        return self

    @property
    def sampled(self) -> bool:
        """Whether the count is an estimate (more distinct users than `capacity` were seen)."""
        return self.bound < _KEY_SPACE

    def users_on_several_lines(self) -> int:
        """Users seen more than once: counted exactly, or estimated from the sample when `sampled`."""
        self._fold()
        several = int(np.count_nonzero(self._stored & _ONE))
        if not self.sampled:
            return several
        return round(several * _KEY_SPACE / self.bound)

    def __getstate__(self):
        self._fold()
        return {"capacity": self.capacity, "bound": self.bound, "stored": self._stored}

    def __setstate__(self, state):
        self.__init__(state["capacity"])
        self.bound = state["bound"]
        self._stored = state["stored"]

    def _fold(self) -> None:
        """Sorts the pending keys into the stored ones, marking repeats; keeps the smallest `capacity`."""
        if not self._pending:
            return
        new = np.sort(np.concatenate(self._pending))  # the stored keys are sorted already
        merged = np.insert(self._stored, np.searchsorted(self._stored, new), new)
        self._pending, self._pending_count = [], 0
        if self.bound < _KEY_SPACE:
            merged = merged[: np.searchsorted(merged, np.uint64(self.bound))]
        user = merged >> _ONE
        starts = np.flatnonzero(np.concatenate(([True], user[1:] != user[:-1])))
        seen = np.diff(np.append(starts, len(merged)))
        marked = np.maximum.reduceat(merged & _ONE, starts) if len(merged) else merged
        stored = (user[starts] << _ONE) | ((seen > 1) | (marked == _ONE)).astype(np.uint64)
        if len(stored) > self.capacity:
            self.bound = int(stored[self.capacity] & ~_ONE)
            stored = stored[: self.capacity]
        self._stored = stored

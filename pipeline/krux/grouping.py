"""One Krux line per user (docs/line.md, Grouping), from Arrow arrays without Beam.

A batch becomes `(user, attr, value)` triples; triples are spread over partitions by a stable
hash of the user id; a partition's triples become one line per user. Everything works on
whole columns with pyarrow compute and numpy: nothing loops over rows or users in Python.

The triples' columns are dictionary-encoded, each batch's strings held once: a batch's
distinct users are hashed (not each triple's), a partition's piece of a batch carries only the
users and values it uses, and grouping unifies those small dictionaries instead of hashing
every triple's strings again.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.settings import MAX_VALUES_PER_USER
from pipeline.errors import InvalidRecordsError
from pipeline.krux.lines import NormalizedBatch

__all__ = [
    "GROUP_TRIPLES",
    "MAX_VALUES_PER_USER",
    "PassTriples",
    "PARTITION_ROWS",
    "TRIPLES_SCHEMA",
    "UNKNOWN_ROWS_PARTITIONS",
    "group_lines",
    "in_pass",
    "passes_for",
    "plan_partitions",
    "split_by_partition",
    "to_triples",
    "user_hashes",
]

_CODED = pa.dictionary(pa.int32(), pa.string())
TRIPLES_SCHEMA = pa.schema([("user", _CODED), ("attr", _CODED), ("value", _CODED)])

# 64-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/), then MurmurHash3's fmix64 finaliser.
_FNV_OFFSET_BASIS = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)

# A grouping partition holds about this many input rows, whatever the audience: the number
# of partitions grows with the input instead (a 500M-row export has hundreds).
PARTITION_ROWS = 750_000
# Partitions when the input's row count is unknown before the run (a query's result): enough
# for about 100M rows; a bigger result takes more passes a partition, not more memory.
UNKNOWN_ROWS_PARTITIONS = 128
# Finer hash buckets kept with each triple (its `bucket` column), so that a partition larger
# than expected can be grouped in several passes without hashing its users again.
SUB_BUCKETS = 256
# Triples grouped in one pass: `group_lines` peaks near 170 bytes a triple (measured on the
# benchmark data: 5.4M triples, 0.97 GiB; 2.7M, 0.62 GiB). The benchmark's rows give 5.4
# triples each, so a planned partition (750k rows, about 4M triples) takes one pass.
GROUP_TRIPLES = 5_000_000

MAX_PACKED_KEY = np.iinfo(np.int64).max
"""Largest (user, attr, value) code key packed into one int64 for sorting; past it, a lexsort."""


def to_triples(norm: NormalizedBatch, segment_attribute: str, *, max_packed_key: int = MAX_PACKED_KEY) -> pa.Table:
    """Flatten a batch of valid rows into `(user, attr, value)` rows, exact repeats dropped.

    Segment values come under `segment_attribute`, each attribute's values under its column
    name. A user on several rows of a batch repeats its attribute values on each of them;
    dropping those repeats here shrinks the shuffle, at about the cost of the flattening.
    """
    named_lists = [(segment_attribute, norm.segments), *norm.attributes]
    users = _as_array(pc.cast(norm.user, pa.string()))
    lists = [_as_array(values) for _, values in named_lists]
    flat = [pc.cast(pc.list_flatten(values), pa.string()) for values in lists]
    rows = np.concatenate([_int_codes(pc.list_parent_indices(values)) for values in lists])
    attr_codes = np.repeat(np.arange(len(lists)), [len(values) for values in flat])
    values = pa.concat_arrays(flat)
    names = pa.array([name for name, _ in named_lists], pa.string())
    if len(values) == 0:
        return TRIPLES_SCHEMA.empty_table()

    user_encoded = pc.dictionary_encode(users)
    value_encoded = pc.dictionary_encode(values)
    user_codes = _int_codes(user_encoded.indices)[rows]
    value_codes = _int_codes(value_encoded.indices)
    user_count, value_count = len(user_encoded.dictionary), len(value_encoded.dictionary)
    if user_count * len(lists) * value_count <= max_packed_key:
        keys = (user_codes * len(lists) + attr_codes) * value_count + value_codes
        order = np.argsort(keys)
        kept = np.sort(order[_run_starts(keys[order])])  # one row per distinct key, batch order
        user_codes, attr_codes, value_codes = user_codes[kept], attr_codes[kept], value_codes[kept]
    return pa.table(
        [
            _coded(user_codes, user_encoded.dictionary),
            _coded(attr_codes, names),
            _coded(value_codes, value_encoded.dictionary),
        ],
        schema=TRIPLES_SCHEMA,
    )


def _coded(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """A dictionary column of `TRIPLES_SCHEMA` from int codes into `dictionary`."""
    indices = pa.array(np.asarray(codes).astype(np.int32, copy=False))  # codes < len(dictionary) < 2**31
    if dictionary.type != pa.string():
        dictionary = pc.cast(dictionary, pa.string())
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def user_hashes(users: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 64-bit hash of each user id, the same in every process: its partition and bucket.

    The hash is 64-bit FNV-1a over the id's UTF-8 bytes, finished by MurmurHash3's fmix64 so
    that every bit of the result depends on every byte. Python's `hash()` is salted per
    process and pyarrow 25 has no scalar hash kernel, so the hash is computed with numpy
    straight from the offsets and data buffers: the result depends only on the text, not on
    string vs large_string, slicing or chunking. A null hashes as "".
    """
    return _hash_utf8(_hash_key(users))


# The hash loops once per byte position of the longest id, so a hostile 10 MB user id would
# take minutes: ids longer than this are hashed as their first and last HASHED_END_CHARS.
HASHED_END_CHARS = 32


def _hash_key(users: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The text hashed for each id: the id itself, or its two ends when it is long."""
    users = pc.cast(pc.fill_null(users, ""), pa.large_string())
    long = pc.greater(pc.utf8_length(users), 2 * HASHED_END_CHARS)
    if not pc.any(long).as_py():
        return users
    ends = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(users, 0, HASHED_END_CHARS),
        pc.utf8_slice_codeunits(users, -HASHED_END_CHARS),
        pa.scalar("", pa.large_string()),
    )
    return pc.if_else(long, ends, users)


def split_by_partition(triples: pa.Table, partitions: int) -> list[tuple[int, pa.Table]]:
    """Split triples by the partition of their user, as `(partition, table)` for non-empty ones.

    Each table is compact: its dictionaries hold only the users and values it uses, so it
    serialises only its own strings (its rows come ordered by value). It gains a `bucket` column (uint8): the user's finer hash
    bucket within the partition (`in_pass`). Only the batch's distinct users are hashed.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    if triples.num_rows == 0:
        return []
    users, attrs, values = (_as_dictionary(triples.column(name)) for name in ("user", "attr", "value"))
    user_codes, attr_codes, value_codes = (_int_codes(c.indices) for c in (users, attrs, values))

    # Each distinct user of the batch: its partition, its bucket, its code within the partition.
    hashes = user_hashes(users.dictionary)
    user_ids = (hashes % np.uint64(partitions)).astype(np.int64)
    user_buckets = ((hashes // np.uint64(partitions)) % np.uint64(SUB_BUCKETS)).astype(np.uint8)
    user_order = np.argsort(user_ids, kind="stable")
    user_starts = np.cumsum(np.bincount(user_ids, minlength=partitions)) - np.bincount(user_ids, minlength=partitions)
    local_code = np.empty(len(user_order), np.int64)
    local_code[user_order] = np.arange(len(user_order)) - user_starts[user_ids[user_order]]
    partition_users = users.dictionary.take(user_order)

    # Rows ordered by partition, then value: each partition's values in runs, numbered in one pass.
    ids = user_ids[user_codes]
    order = np.argsort(ids * len(values.dictionary) + value_codes)
    sorted_ids, sorted_values = ids[order], value_codes[order]
    new_value = _run_starts(sorted_values) | _run_starts(sorted_ids)
    value_number = np.cumsum(new_value) - 1
    used_values = values.dictionary.take(sorted_values[new_value])

    counts = np.bincount(ids, minlength=partitions)
    ends = np.cumsum(counts)
    user_counts = np.bincount(user_ids, minlength=partitions)
    parts = []
    for p in np.flatnonzero(counts):
        start, end = ends[p] - counts[p], ends[p]
        rows, codes = order[start:end], user_codes[order[start:end]]
        first_value = value_number[start]
        own_users = partition_users.slice(user_starts[p], user_counts[p])
        own_values = used_values.slice(first_value, value_number[end - 1] - first_value + 1)
        columns = [
            _coded(local_code[codes], own_users),
            _coded(attr_codes[rows], attrs.dictionary),
            _coded(value_number[start:end] - first_value, own_values),
            pa.array(user_buckets[codes], pa.uint8()),
        ]
        parts.append((int(p), pa.table(columns, schema=_BUCKETED_SCHEMA)))
    return parts


_BUCKETED_SCHEMA = TRIPLES_SCHEMA.append(pa.field("bucket", pa.uint8()))


def _as_dictionary(column: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """One dictionary array of strings, from a dictionary or plain string column."""
    column = _as_array(column.unify_dictionaries() if isinstance(column, pa.ChunkedArray)
                       and pa.types.is_dictionary(column.type) else column)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    return column



def plan_partitions(rows: int | None, rows_per_partition: int = PARTITION_ROWS) -> int:
    """Grouping partitions for `rows` input rows (None: unknown): `rows_per_partition` rows each."""
    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be at least 1, got {rows_per_partition}")
    if rows is None:
        return UNKNOWN_ROWS_PARTITIONS
    return max(1, -(-max(rows, 0) // rows_per_partition))


def passes_for(triples: int, budget: int = GROUP_TRIPLES) -> int:
    """Passes that group `triples` triples at most about `budget` at a time (≤ SUB_BUCKETS)."""
    return min(SUB_BUCKETS, max(1, -(-triples // budget)))


def in_pass(triples: pa.Table, number: int, passes: int) -> pa.Table:
    """The triples of pass `number` of `passes`: a user's triples are all in the same pass."""
    if passes == 1:
        return triples
    buckets = triples.column("bucket").to_numpy()
    return triples.filter(pa.array(buckets % passes == number))


class PassTriples:
    """The triples of one grouping pass, added a run at a time in bounded memory.

    Passes split a partition by users, so one user with more triples than a pass's `budget`
    (a placeholder id on millions of rows) would be held whole. Whenever more than `budget`
    triples are held, repeats are dropped (`distinct_triples`), so memory follows the distinct
    values, and a user with more than `max_values_per_user` of those is refused.
    """

    def __init__(self, budget: int, max_values_per_user: int = MAX_VALUES_PER_USER):
        self._budget, self._max_values = budget, max_values_per_user
        self._tables: list[pa.Table] = []
        self.held = 0
        self.compactions = 0

    def add(self, triples: pa.Table) -> None:
        self._tables.append(triples.select(TRIPLES_SCHEMA.names))
        self.held += triples.num_rows
        if self.held > self._budget:
            kept = distinct_triples(self.table(), self._max_values)
            self._tables, self.held = [kept], kept.num_rows
            self.compactions += 1
            # Distinct triples beyond the budget: compact again only once that many more came.
            self._budget = max(self._budget, 2 * self.held)

    def table(self) -> pa.Table:
        if not self._tables:
            return TRIPLES_SCHEMA.empty_table()
        return pa.concat_tables(self._tables)


def distinct_triples(triples: pa.Table, max_values_per_user: int = MAX_VALUES_PER_USER) -> pa.Table:
    """`triples` with repeats dropped, as a dictionary-coded triples table."""
    users, attrs, values, user_codes, attr_codes, value_codes = _distinct_codes(triples, max_values_per_user)
    return pa.table(
        [_coded(user_codes, users), _coded(attr_codes, attrs), _coded(value_codes, values)],
        schema=TRIPLES_SCHEMA,
    )


def group_lines(
    triples: pa.Table,
    segment_attribute: str,
    max_values_per_user: int = MAX_VALUES_PER_USER,
    *,
    max_packed_key: int = MAX_PACKED_KEY,
) -> pa.Array:
    """One Krux line per distinct user of `triples`, each ending in `\\n`, ordered by user id.

    docs/line.md, Grouping: each attribute's values are the union over the user's rows, repeats
    dropped, sorted by code point; the segment attribute first, then the others by name.
    Strings compare by UTF-8 bytes, which orders them as their code points. The triples hold
    no nulls (they come from valid rows); the lines are one large_string array. A user with
    more than `max_values_per_user` distinct values raises `InvalidRecordsError`.
    """
    if triples.num_rows == 0:
        return pa.array([], pa.large_string())
    users, attrs, values, user_codes, attr_codes, value_codes = _distinct_codes(
        triples, max_values_per_user, first_attr=segment_attribute, max_packed_key=max_packed_key
    )
    new_user = _run_starts(user_codes)
    new_group = new_user | _run_starts(attr_codes)

    # "attr:v1,v2" per (user, attr) run, then "user^piece;piece\n" per user run.
    group_starts = np.flatnonzero(new_group)
    joined_values = pc.binary_join(_lists(group_starts, values.take(value_codes)), _text(","))
    attr_prefixes = pc.binary_join_element_wise(attrs, _text(":"), _text(""))
    pieces = pc.binary_join_element_wise(
        attr_prefixes.take(attr_codes[group_starts]), joined_values, _text("")
    )
    user_starts = np.flatnonzero(new_user)
    user_pieces = np.flatnonzero(new_user[new_group])  # first piece of each user
    body = pc.binary_join(_lists(user_pieces, pieces), _text(";"))
    return pc.binary_join_element_wise(
        users.take(user_codes[user_starts]), _text("^"), body, _text("\n"), _text("")
    )


def _distinct_codes(
    triples: pa.Table, max_values_per_user: int, first_attr: str | None = None, max_packed_key: int = MAX_PACKED_KEY
):
    """The sorted distinct strings of each column and the distinct triples' codes into them,
    sorted by user, attribute name (`first_attr` first), value; refuses a user with too many values."""
    users, user_codes = _sorted_codes(triples.column("user"))
    attrs, attr_codes = _sorted_codes(triples.column("attr"))
    values, value_codes = _sorted_codes(triples.column("value"))
    if first_attr is not None:
        attr_order = np.argsort(pc.not_equal(attrs, first_attr).to_numpy(zero_copy_only=False), kind="stable")
        attr_rank = np.empty(len(attrs), np.int64)
        attr_rank[attr_order] = np.arange(len(attrs))
        attrs, attr_codes = attrs.take(attr_order), attr_rank[attr_codes]
    user_codes, attr_codes, value_codes = _distinct_sorted(
        user_codes, attr_codes, value_codes, len(attrs), len(values), max_packed_key
    )
    _check_values_per_user(users, user_codes, max_values_per_user)
    return users, attrs, values, user_codes, attr_codes, value_codes


def _check_values_per_user(users: pa.Array, user_codes: np.ndarray, limit: int) -> None:
    starts = np.flatnonzero(_run_starts(user_codes))
    counts = np.diff(np.append(starts, len(user_codes)))
    if len(counts) == 0 or counts.max() <= limit:
        return
    worst = int(np.argmax(counts))
    user = users[int(user_codes[starts[worst]])].as_py()
    shown = user if len(user) <= 64 else user[:61] + "..."
    raise InvalidRecordsError(
        f"grouping by user: user id {shown!r} has at least {int(counts[worst]):,} distinct values, over "
        f"--max-values-per-user {limit:,}: a placeholder id shared by many rows? Leave it out of the "
        "tables (or the query), or raise --max-values-per-user"
    )


def _text(text: str) -> pa.Scalar:
    """A large_string scalar: group_lines works in large_string throughout."""
    return pa.scalar(text, pa.large_string())


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A plain array from an array or a chunked array."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _sorted_codes(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The distinct strings of `column` in byte order, and each row's index into them.

    Hashing the column and sorting only its distinct values is cheaper than sorting the rows;
    a dictionary column (chunks of a spill) only has its chunks' dictionaries unified.
    """
    if pa.types.is_dictionary(column.type):
        chunks = column.unify_dictionaries().chunks if isinstance(column, pa.ChunkedArray) else [column]
        distinct = pc.cast(chunks[0].dictionary, pa.large_string())
        indices = np.concatenate([_int_codes(chunk.indices) for chunk in chunks])
    else:
        encoded = _as_array(pc.dictionary_encode(_as_array(pc.cast(column, pa.large_string()))))
        distinct, indices = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
    order = pc.sort_indices(distinct).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return distinct.take(order), rank[indices]


def _distinct_sorted(
    user_codes: np.ndarray,
    attr_codes: np.ndarray,
    value_codes: np.ndarray,
    attr_count: int,
    value_count: int,
    max_packed_key: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct `(user, attr, value)` code triples, sorted in that order of precedence.

    The triple packs into one int64 key whenever the code ranges allow (always, short of
    billions of distinct values), and an int64 sort is several times faster than a lexsort.
    """
    user_count = int(user_codes.max()) + 1
    if user_count * attr_count * value_count <= max_packed_key:
        keys = np.sort((user_codes * attr_count + attr_codes) * value_count + value_codes)
        keys = keys[_run_starts(keys)]
        rest, value_codes = np.divmod(keys, value_count)
        user_codes, attr_codes = np.divmod(rest, attr_count)
        return user_codes, attr_codes, value_codes
    order = np.lexsort((value_codes, attr_codes, user_codes))
    user_codes, attr_codes, value_codes = user_codes[order], attr_codes[order], value_codes[order]
    new = _run_starts(user_codes) | _run_starts(attr_codes) | _run_starts(value_codes)
    return user_codes[new], attr_codes[new], value_codes[new]


def _int_codes(indices: pa.Array) -> np.ndarray:
    """An Arrow integer array without nulls as an int64 numpy array."""
    return indices.to_numpy().astype(np.int64, copy=False)


def _run_starts(codes: np.ndarray) -> np.ndarray:
    """True where a sorted code differs from the one before it (and at the first row)."""
    starts = np.empty(len(codes), bool)
    if len(codes):
        starts[0] = True
        np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    return starts


def _lists(starts: np.ndarray, values: pa.Array) -> pa.Array:
    """A list array cutting `values` into runs beginning at `starts`."""
    offsets = np.append(starts, len(values)).astype(np.int64)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def _hash_utf8(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit FNV-1a of each string's UTF-8 bytes, mixed by fmix64; layout-independent."""
    array = _as_array(pc.cast(pc.fill_null(strings, ""), pa.large_string()))
    count = len(array)
    if count == 0:
        return np.empty(0, np.uint64)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[array.offset : array.offset + count + 1]
    data = np.frombuffer(data_buffer or b"", np.uint8)
    lengths = np.diff(offsets)

    # Longest first: at byte position j, the rows still hashing are a prefix of this order, so
    # the loop runs once per byte position (not per row) and touches each byte once.
    order = np.argsort(-lengths, kind="stable")
    starts = offsets[:-1][order]
    longest = int(lengths[order[0]])
    active = np.searchsorted(-lengths[order], -np.arange(longest), side="left")
    hashes = np.full(count, _FNV_OFFSET_BASIS, np.uint64)
    for position, rows in enumerate(active):
        head = hashes[:rows]
        np.bitwise_xor(head, data[starts[:rows] + position], out=head)
        np.multiply(head, _FNV_PRIME, out=head)

    hashes ^= hashes >> np.uint64(33)
    hashes *= _FMIX_C1
    hashes ^= hashes >> np.uint64(33)
    hashes *= _FMIX_C2
    hashes ^= hashes >> np.uint64(33)
    result = np.empty(count, np.uint64)
    result[order] = hashes
    return result

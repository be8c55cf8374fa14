"""One Krux line per user (docs/line.md, Grouping), from Arrow arrays without Beam.

A batch becomes `(user, attr, value)` triples; triples are spread over partitions by a stable
hash of the user id; a partition's triples become one line per user. Everything works on
whole columns with pyarrow compute and numpy: nothing loops over rows or users in Python.

The work is done once per triple where it must be done at all: a batch's triples index its
own rows' ids (nothing hashed but each row's id, for its partition) and keep their values as
text; only when a partition is grouped are its ids and values encoded, its values sorted, its
repeats dropped, and its lines cut out of one gathered string buffer.
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
    "concat_triples",
    "group_lines",
    "in_pass",
    "passes_for",
    "plan_partitions",
    "split_by_partition",
    "to_triples",
    "user_hashes",
]

_CODED = pa.dictionary(pa.int32(), pa.string())
TRIPLES_SCHEMA = pa.schema([("user", _CODED), ("attr", _CODED), ("value", pa.string())])
"""A user column indexing ids (a dictionary that may repeat an id: one entry per source row),
an attribute column indexing names, and the values as text."""

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
# A partition larger than expected is grouped in several passes, each taking the users whose
# hash's top byte falls in its share of these buckets (independent of the partition, its low bits).
SUB_BUCKETS = 256
# Triples grouped in one pass: `group_lines` peaks near 170 bytes a triple (measured on the
# benchmark data: 5.4M triples, 0.97 GiB; 2.7M, 0.62 GiB). The benchmark's rows give 5.4
# triples each, so a planned partition (750k rows, about 4M triples) takes one pass.
GROUP_TRIPLES = 5_000_000

MAX_PACKED_KEY = np.iinfo(np.int64).max
"""Largest (user, attr, value) code key packed into one int64 for sorting; past it, a lexsort."""


def to_triples(norm: NormalizedBatch, segment_attribute: str) -> pa.Table:
    """Flatten a batch of valid rows into `(user, attr, value)` rows, one per value.

    Segment values come under `segment_attribute`, each attribute's values under its column
    name. Nothing is hashed or sorted here: the user column indexes the batch's own ids (one
    dictionary entry per row) and values stay text, so a batch costs a few copies; repeats
    are dropped once, when a partition is grouped.
    """
    named_lists = [(segment_attribute, norm.segments), *norm.attributes]
    lists = [_as_array(values) for _, values in named_lists]
    flat = [pc.cast(pc.list_flatten(values), pa.string()) for values in lists]
    if sum(len(values) for values in flat) == 0:
        return TRIPLES_SCHEMA.empty_table()
    rows = np.concatenate([_codes32(pc.list_parent_indices(values)) for values in lists])
    attr_codes = np.repeat(np.arange(len(lists), dtype=np.int32), [len(values) for values in flat])
    users = _as_array(pc.cast(norm.user, pa.string()))
    names = pa.array([name for name, _ in named_lists], pa.string())
    return pa.table(
        [_coded(rows, users), _coded(attr_codes, names), pa.concat_arrays(flat)], schema=TRIPLES_SCHEMA
    )


def concat_triples(tables: list[pa.Table]) -> pa.Table:
    """Triples tables (or plain `user, attr, value` string tables) as one `TRIPLES_SCHEMA` chunk.

    The user dictionaries are laid end to end (an id may then appear twice: grouping unifies
    them), the few attribute names are merged, the values copied: nothing is hashed.
    """
    if len(tables) == 1 and tables[0].schema == TRIPLES_SCHEMA and tables[0].column(0).num_chunks == 1:
        return tables[0]
    users, user_codes, names, attr_codes, values = [], [], {}, [], []
    user_count = 0
    for table in tables:
        for batch in table.select(TRIPLES_SCHEMA.names).to_batches():
            if batch.num_rows == 0:
                continue
            dictionary, codes = _dictionary_and_codes(batch.column(0))
            users.append(dictionary)
            user_codes.append(codes + np.int32(user_count))
            user_count += len(dictionary)
            dictionary, codes = _dictionary_and_codes(batch.column(1))
            remap = np.array([names.setdefault(name, len(names)) for name in dictionary.to_pylist()], np.int32)
            attr_codes.append(remap[codes])
            value = batch.column(2)
            values.append(value.dictionary.take(value.indices) if pa.types.is_dictionary(value.type) else value)
    if not values:
        return TRIPLES_SCHEMA.empty_table()
    return pa.table(
        [
            _coded(np.concatenate(user_codes), pa.concat_arrays([pc.cast(u, pa.string()) for u in users])),
            _coded(np.concatenate(attr_codes), pa.array(list(names), pa.string())),
            pa.concat_arrays([pc.cast(v, pa.string()) for v in values]),
        ],
        schema=TRIPLES_SCHEMA,
    )


def _dictionary_and_codes(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A dictionary column's dictionary and codes; a plain column is its own dictionary."""
    if pa.types.is_dictionary(column.type):
        return column.dictionary, _codes32(column.indices)
    return column, np.arange(len(column), dtype=np.int32)


def _coded(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """A dictionary column of `TRIPLES_SCHEMA` from int codes into `dictionary`."""
    indices = pa.array(codes.astype(np.int32, copy=False))  # codes < len(dictionary) < 2**31
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

    A user's partition is its hash (`user_hashes`) modulo `partitions`. Each table is one
    compact chunk: its user dictionary holds only its own ids, its values only its own text.
    Only the user dictionary's entries are hashed (a batch's rows, not its triples), and the
    two reorderings are 16-bit radix sorts.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    triples = concat_triples([triples])
    if triples.num_rows == 0:
        return []
    users, attrs, values = (triples.column(name).chunk(0) for name in ("user", "attr", "value"))
    user_codes = _codes32(users.indices)

    entry_partition = (user_hashes(users.dictionary) % np.uint64(partitions)).astype(np.int64)
    entry_order = _order_by_partition(entry_partition, partitions)
    entry_counts = np.bincount(entry_partition, minlength=partitions)
    entry_ends = np.cumsum(entry_counts)
    local_code = np.empty(len(entry_order), np.int32)  # each entry's index in its partition's dictionary
    local_code[entry_order] = np.arange(len(entry_order)) - (entry_ends - entry_counts)[entry_partition[entry_order]]
    entries = users.dictionary.take(pa.array(entry_order))

    triple_partition = entry_partition[user_codes]
    order = _order_by_partition(triple_partition, partitions)
    counts = np.bincount(triple_partition, minlength=partitions)
    ends = np.cumsum(counts)
    ordered_values = values.take(pa.array(order))
    ordered_users = local_code[user_codes[order]]
    ordered_attrs = _codes32(attrs.indices)[order]
    parts = []
    for p in np.flatnonzero(counts):
        start, end = ends[p] - counts[p], ends[p]
        columns = [
            _coded(ordered_users[start:end], entries.slice(entry_ends[p] - entry_counts[p], entry_counts[p])),
            _coded(ordered_attrs[start:end], attrs.dictionary),
            ordered_values.slice(start, end - start),
        ]
        parts.append((int(p), pa.table(columns, schema=TRIPLES_SCHEMA)))
    return parts


def _order_by_partition(partition: np.ndarray, partitions: int) -> np.ndarray:
    """A stable order by partition number: numpy's radix sort when the numbers fit 16 bits."""
    if partitions <= 1 << 16:
        return np.argsort(partition.astype(np.uint16), kind="stable")
    return np.argsort(partition, kind="stable")


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
    """The triples of pass `number` of `passes`: a user's triples are all in the same pass.

    A user's pass comes from its hash's top byte, so it is the same in every run of a
    partition; the ids are hashed again only here, when a partition needs several passes.
    """
    if passes == 1:
        return triples
    keep = []
    for batch in triples.select(TRIPLES_SCHEMA.names).to_batches():
        dictionary, codes = _dictionary_and_codes(batch.column(0))
        entry_pass = (user_hashes(dictionary) >> np.uint64(56)).astype(np.int64) % passes
        keep.append(batch.filter(pa.array(entry_pass[codes] == number)))
    return pa.Table.from_batches(keep, triples.select(TRIPLES_SCHEMA.names).schema)


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

    def add(self, triples: pa.Table) -> None:
        self._tables.append(triples.select(TRIPLES_SCHEMA.names))
        self.held += triples.num_rows
        if self.held > self._budget:
            kept = distinct_triples(self.table(), self._max_values)
            self._tables, self.held = [kept], kept.num_rows
            # Distinct triples beyond the budget: compact again only once that many more came.
            self._budget = max(self._budget, 2 * self.held)

    def table(self) -> pa.Table:
        if not self._tables:
            return TRIPLES_SCHEMA.empty_table()
        return pa.concat_tables(self._tables)


def distinct_triples(triples: pa.Table, max_values_per_user: int = MAX_VALUES_PER_USER) -> pa.Table:
    """`triples` with repeats dropped, as one triples chunk."""
    users, attrs, values, user_codes, attr_codes, value_codes = _distinct_codes(triples, max_values_per_user)
    return pa.table(
        [_coded(user_codes, users), _coded(attr_codes, attrs), pc.cast(values.take(value_codes), pa.string())],
        schema=TRIPLES_SCHEMA,
    )


def group_lines(
    triples: pa.Table,
    segment_attribute: str,
    max_values_per_user: int = MAX_VALUES_PER_USER,
    *,
    max_packed_key: int = MAX_PACKED_KEY,
) -> pa.Array:
    """One Krux line per distinct user of `triples`, each ending in `\\n` (a large_string array).

    docs/line.md, Grouping: each attribute's values are the union over the user's rows, repeats
    dropped, sorted by code point; the segment attribute first, then the others by name.
    Strings compare by UTF-8 bytes, which orders them as their code points. The triples hold
    no nulls (they come from valid rows). A user with more than `max_values_per_user`
    distinct values raises `InvalidRecordsError`.

    The lines are cut out of one string gather: every piece of every line (id, `^name:`,
    `;name:`, `,`, value, newline) is an entry of one vocabulary, the pieces are taken in line
    order, and the lines are that buffer with the users' offsets.
    """
    if triples.num_rows == 0:
        return pa.array([], pa.large_string())
    users, attrs, values, user_codes, attr_codes, value_codes = _distinct_codes(
        triples, max_values_per_user, first_attr=segment_attribute, max_packed_key=max_packed_key
    )
    count = len(user_codes)
    new_user = _run_starts(user_codes)
    new_group = new_user | _run_starts(attr_codes)
    first = np.flatnonzero(new_user)  # each line's first triple
    names = attrs.to_pylist()
    vocabulary = pa.concat_arrays([
        values,
        users,
        pa.array([f"^{name}:" for name in names] + [f";{name}:" for name in names] + [",", "\n"], pa.large_string()),
    ])
    first_prefix, next_prefix = len(values) + len(users), len(values) + len(users) + len(names)
    comma, newline = next_prefix + len(names), next_prefix + len(names) + 1

    # A line: its id, then for each triple a separator (`^name:`, `;name:` or `,`) and the
    # value, then a newline: 2 pieces a triple and 2 a line. Triple i's separator is piece
    # 2 * (i + the number of lines begun up to it) - 1. Pieces index the vocabulary (int32).
    separator_at = np.cumsum(new_user, dtype=np.int64)
    separator_at += np.arange(count)
    separator_at *= 2
    separator_at -= 1
    separators = np.full(count, comma, np.int32)
    attr_codes32 = attr_codes.astype(np.int32)
    np.add(attr_codes32, next_prefix, out=separators, where=new_group)
    np.add(attr_codes32, first_prefix, out=separators, where=new_user)
    pieces = np.empty(2 * count + 2 * len(first), np.int32)
    pieces[separator_at] = separators
    pieces[separator_at + 1] = value_codes
    line_starts = separator_at[first] - 1
    pieces[line_starts] = len(values) + user_codes[first]
    pieces[np.append(line_starts[1:], len(pieces)) - 1] = newline

    text = vocabulary.take(pa.array(pieces))
    offsets = np.frombuffer(text.buffers()[1], np.int64)[: len(text) + 1]
    line_offsets = np.append(offsets[line_starts], offsets[-1])
    return pa.LargeStringArray.from_buffers(
        len(first), pa.py_buffer(line_offsets), text.buffers()[2]
    )


def _distinct_codes(
    triples: pa.Table, max_values_per_user: int, first_attr: str | None = None, max_packed_key: int = MAX_PACKED_KEY
):
    """The distinct strings of each column and the distinct triples' codes into them, sorted
    by user (in no particular order of ids), attribute name (`first_attr` first) and value (by
    code point); refuses a user with too many values."""
    users, user_codes = _codes(triples.column("user"))
    attrs, attr_codes = _codes(triples.column("attr"))
    values, value_codes = _codes(triples.column("value"))
    values, value_codes = _sorted(values, value_codes)
    names = attrs.to_pylist()
    attr_order = np.array(sorted(range(len(names)), key=lambda i: (names[i] != first_attr, names[i])), np.int64)
    attr_rank = np.empty(len(names), np.int64)
    attr_rank[attr_order] = np.arange(len(names))
    attrs, attr_codes = attrs.take(pa.array(attr_order)), attr_rank[attr_codes]
    user_codes, attr_codes, value_codes = _distinct_sorted(
        user_codes, attr_codes, value_codes, len(users), len(attrs), len(values), max_packed_key
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


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A plain array from an array or a chunked array."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The distinct strings of `column` (large_string, in no particular order) and each row's
    index into them. A dictionary column's entries are encoded (not its rows): its
    dictionaries may repeat a string (one entry per source row), so they are never trusted
    to be distinct. Chunks are encoded against one shared dictionary, without being copied
    into one array first."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not pa.types.is_dictionary(column.type):
        return _encoded(pa.chunked_array(chunks, column.type))
    distinct, entry_codes = _encoded(pa.chunked_array([c.dictionary for c in chunks], column.type.value_type))
    starts = np.cumsum([0] + [len(c.dictionary) for c in chunks])
    codes = [entry_codes[start:end][_codes32(c.indices)] for c, start, end in zip(chunks, starts, starts[1:])]
    return distinct, np.concatenate(codes) if codes else np.empty(0, np.int64)


def _encoded(strings: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct strings of `strings` (large_string) and each one's int64 code into them."""
    encoded = pc.dictionary_encode(strings)  # one dictionary shared by every chunk
    if len(encoded) == 0:
        return pa.array([], pa.large_string()), np.empty(0, np.int64)
    distinct = pc.cast(encoded.chunk(encoded.num_chunks - 1).dictionary, pa.large_string())
    return distinct, np.concatenate([_int_codes(chunk.indices) for chunk in encoded.chunks])


def _sorted(distinct: pa.Array, codes: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """`distinct` in byte order (code point order for UTF-8) and `codes` renumbered to match."""
    order = pc.sort_indices(distinct).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return distinct.take(pa.array(order)), rank[codes]


def _distinct_sorted(
    user_codes: np.ndarray,
    attr_codes: np.ndarray,
    value_codes: np.ndarray,
    user_count: int,
    attr_count: int,
    value_count: int,
    max_packed_key: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct `(user, attr, value)` code triples, sorted in that order of precedence.

    The triple packs into one int64 key of bit fields whenever they fit (always, short of
    billions of distinct values): an int64 sort is several times faster than a lexsort, and
    shifts and masks unpack it faster than division.
    """
    value_bits, attr_bits = _bits(value_count), _bits(attr_count)
    if (1 << (_bits(user_count) + attr_bits + value_bits)) - 1 <= max_packed_key:
        keys = (user_codes << (attr_bits + value_bits)) | (attr_codes << value_bits) | value_codes
        keys.sort()
        keys = keys[_run_starts(keys)]
        value_mask, attr_mask = (1 << value_bits) - 1, (1 << attr_bits) - 1
        return keys >> (attr_bits + value_bits), (keys >> value_bits) & attr_mask, keys & value_mask
    order = np.lexsort((value_codes, attr_codes, user_codes))
    user_codes, attr_codes, value_codes = user_codes[order], attr_codes[order], value_codes[order]
    new = _run_starts(user_codes) | _run_starts(attr_codes) | _run_starts(value_codes)
    return user_codes[new], attr_codes[new], value_codes[new]


def _bits(count: int) -> int:
    """Bits that hold the codes 0 .. count - 1."""
    return max(int(count) - 1, 0).bit_length()


def _codes32(indices: pa.Array) -> np.ndarray:
    """Arrow integer codes without nulls (each below 2**31) as an int32 numpy array, a view when they are int32."""
    return indices.to_numpy().astype(np.int32, copy=False)


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
    # Hashed keys are at most 2 × HASHED_END_CHARS characters (256 bytes): a 16-bit radix sort.
    order = np.argsort((lengths.max() - lengths).astype(np.uint16), kind="stable")
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

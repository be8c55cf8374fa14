"""Grouping by user (SPEC §3, Grouping): triples, stable partitions, one line per user."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.krux import grouping
from pipeline.errors import InvalidRecordsError
from pipeline.krux.grouping import concat_triples, group_lines, split_by_partition, to_triples, user_hashes
from pipeline.krux.lines import NormalizedBatch

SEGMENT = "segment"
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_batch(users, segments, **attributes):
    """A NormalizedBatch of valid rows: each attribute is a list of value lists per row."""
    rows = len(users)
    return NormalizedBatch(
        user=pa.array(users, pa.string()),
        segments=pa.array(segments, pa.list_(pa.string())),
        attributes=tuple(
            (name, pa.array(values, pa.list_(pa.string()))) for name, values in attributes.items()
        ),
        reasons=pa.nulls(rows, pa.string()),
        reason_columns=pa.nulls(rows, pa.string()),
    )


def triples(*rows):
    """A triples table from `(user, attr, value)` tuples."""
    users, attrs, values = zip(*rows) if rows else ((), (), ())
    return pa.table(
        {
            "user": pa.array(users, pa.string()),
            "attr": pa.array(attrs, pa.string()),
            "value": pa.array(values, pa.string()),
        }
    )


def rows_of(table):
    return sorted(zip(*(table.column(name).to_pylist() for name in ("user", "attr", "value"))))


# -- to_triples ------------------------------------------------------------------------------


def test_to_triples_gives_segments_under_the_segment_attribute_and_each_list_value():
    norm = make_batch(
        ["u1", "u2"],
        [["seg1", "seg2"], []],
        email=[[], ["b@x.com"]],
        interests=[["golf", "tennis"], ["chess"]],
    )

    table = to_triples(norm, SEGMENT)

    assert table.schema == grouping.TRIPLES_SCHEMA
    assert rows_of(table) == [
        ("u1", "interests", "golf"),
        ("u1", "interests", "tennis"),
        ("u1", "segment", "seg1"),
        ("u1", "segment", "seg2"),
        ("u2", "email", "b@x.com"),
        ("u2", "interests", "chess"),
    ]


def test_to_triples_uses_the_configured_segment_attribute_name():
    norm = make_batch(["u1"], [["seg1"]])

    assert rows_of(to_triples(norm, "audience")) == [("u1", "audience", "seg1")]


def test_to_triples_keeps_every_value_of_every_row_repeats_included():
    # Repeats cost nothing to keep here: grouping drops them once per partition.
    norm = make_batch(
        ["u1", "u1", "u2"],
        [["seg1"], ["seg1", "seg2"], ["seg1"]],
        city=[["Paris"], ["Paris"], ["Paris"]],
    )

    assert rows_of(to_triples(norm, SEGMENT)) == [
        ("u1", "city", "Paris"),
        ("u1", "city", "Paris"),
        ("u1", "segment", "seg1"),
        ("u1", "segment", "seg1"),
        ("u1", "segment", "seg2"),
        ("u2", "city", "Paris"),
        ("u2", "segment", "seg1"),
    ]
    assert group_lines(to_triples(norm, SEGMENT), SEGMENT).to_pylist() == [
        "u1^segment:seg1,seg2;city:Paris\n",
        "u2^segment:seg1;city:Paris\n",
    ]


def test_to_triples_keeps_a_value_shared_by_two_attributes_of_one_user():
    norm = make_batch(["u1"], [["x"]], tag=[["x"]])

    assert rows_of(to_triples(norm, SEGMENT)) == [("u1", "segment", "x"), ("u1", "tag", "x")]


def test_to_triples_reads_sliced_and_large_typed_arrays():
    users = pa.array(["skip", "u1", "u2"], pa.large_string())[1:]
    segments = pa.array([["s0"], ["seg1"], ["seg2"]], pa.large_list(pa.large_string()))[1:]
    norm = NormalizedBatch(
        user=users,
        segments=segments,
        attributes=(("city", pa.array([["X"], [], ["Rome"]], pa.list_(pa.string()))[1:]),),
        reasons=pa.nulls(2, pa.string()),
        reason_columns=pa.nulls(2, pa.string()),
    )

    assert rows_of(to_triples(norm, SEGMENT)) == [
        ("u1", "segment", "seg1"),
        ("u2", "city", "Rome"),
        ("u2", "segment", "seg2"),
    ]


def test_to_triples_of_rows_without_values_is_empty():
    norm = make_batch(["u1"], [[]], city=[[]])

    table = to_triples(norm, SEGMENT)

    assert table.num_rows == 0
    assert table.schema == grouping.TRIPLES_SCHEMA


# -- group_lines -----------------------------------------------------------------------------


def test_spec_example_row_gives_its_line():
    norm = make_batch(
        ["uid1"], [["seg1", "seg2"]], email=[[]], firstname=[["Britty"]], lastname=[["Morris"]]
    )

    lines = group_lines(to_triples(norm, SEGMENT), SEGMENT)

    assert lines.to_pylist() == ["uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris\n"]


def test_a_user_across_tables_gets_the_union_of_its_values_on_one_line():
    table_a = make_batch(["uid1", "uid2"], [["seg2", "seg1"], ["seg9"]], firstname=[["Britty"], []])
    table_b = make_batch(["uid1"], [["seg3", "seg1"]], firstname=[["Brit"]])
    both = pa.concat_tables([to_triples(table_a, SEGMENT), to_triples(table_b, SEGMENT)])

    lines = group_lines(both, SEGMENT)

    assert lines.to_pylist() == [
        "uid1^segment:seg1,seg2,seg3;firstname:Brit,Britty\n",
        "uid2^segment:seg9\n",
    ]


def test_repeated_values_of_a_user_are_written_once():
    lines = group_lines(
        triples(
            ("u1", "segment", "seg1"),
            ("u1", "segment", "seg1"),
            ("u1", "city", "Paris"),
            ("u1", "segment", "seg1"),
            ("u1", "city", "Paris"),
        ),
        SEGMENT,
    )

    assert lines.to_pylist() == ["u1^segment:seg1;city:Paris\n"]


def test_values_sort_by_code_point():
    # 'B' (U+0042) < 'a' (U+0061) < 'z' < 'é' (U+00E9) < '｡' (U+FF61) < '😀' (U+1F600); UTF-16
    # order would put the emoji's surrogate pair (0xD83D...) before U+FF61.
    values = ["😀", "z", "a", "é", "｡", "B", "ab", "A"]
    lines = group_lines(triples(*(("u1", "segment", value) for value in values)), SEGMENT)

    assert lines.to_pylist() == ["u1^segment:A,B,a,ab,z,é,｡,😀\n"]


def test_attributes_follow_the_segment_attribute_in_name_order():
    lines = group_lines(
        triples(
            ("u1", "zip", "75001"),
            ("u1", "age", "42"),
            ("u1", "segment", "seg1"),
            ("u1", "Zeta", "z"),
            ("u1", "sa", "1"),
            ("u1", "segmentation", "2"),
        ),
        SEGMENT,
    )

    assert lines.to_pylist() == [
        "u1^segment:seg1;Zeta:z;age:42;sa:1;segmentation:2;zip:75001\n"
    ]


def test_a_user_without_segments_has_no_segment_attribute():
    lines = group_lines(
        triples(("u1", "lastname", "Morris"), ("u1", "firstname", "Britty")), SEGMENT
    )

    assert lines.to_pylist() == ["u1^firstname:Britty;lastname:Morris\n"]


def test_a_user_with_only_segments_has_only_the_segment_attribute():
    lines = group_lines(triples(("u1", "segment", "seg2"), ("u1", "segment", "seg1")), SEGMENT)

    assert lines.to_pylist() == ["u1^segment:seg1,seg2\n"]


def test_one_line_per_user_each_ending_in_newline():
    lines = group_lines(
        triples(
            ("u2", "segment", "b"),
            ("U3", "city", "Oslo"),
            ("u1", "segment", "a"),
            ("u2", "city", "Rome"),
            ("u1", "segment", "c"),
        ),
        SEGMENT,
    )

    assert isinstance(lines, pa.Array)
    assert sorted(lines.to_pylist()) == [  # lines come in no particular order of user ids
        "U3^city:Oslo\n",
        "u1^segment:a,c\n",
        "u2^segment:b;city:Rome\n",
    ]


def test_lines_use_the_configured_segment_attribute_name():
    lines = group_lines(
        triples(("u1", "age", "42"), ("u1", "audience", "s1"), ("u1", "segment", "x")), "audience"
    )

    assert lines.to_pylist() == ["u1^audience:s1;age:42;segment:x\n"]


def test_group_lines_reads_chunked_and_large_string_columns():
    first = triples(("u1", "segment", "seg2"), ("u2", "city", "Rome"))
    second = triples(("u1", "segment", "seg1")).cast(
        pa.schema([(name, pa.large_string()) for name in ("user", "attr", "value")])
    )
    both = pa.concat_tables([first, second], promote_options="permissive")

    assert group_lines(both, SEGMENT).to_pylist() == [
        "u1^segment:seg1,seg2\n",
        "u2^city:Rome\n",
    ]


def test_group_lines_reads_runs_of_dictionary_chunks_some_of_them_empty():
    runs = [
        concat_triples([triples(("u1", "segment", "s2"), ("u2", "segment", "s1"))]),
        concat_triples([triples()]),
        concat_triples([triples(("u2", "segment", "s1"), ("u1", "city", "Oslo"), ("u1", "segment", "s1"))]),
    ]
    table = pa.concat_tables(runs)  # as a partition's runs are read: chunks with dictionaries of their own

    assert table.column("user").num_chunks == 3
    assert sorted(group_lines(table, SEGMENT).to_pylist()) == [
        "u1^segment:s1,s2;city:Oslo\n",
        "u2^segment:s1\n",
    ]


def test_lines_are_the_same_when_codes_do_not_fit_one_sort_key():
    table = triples(
        ("u2", "segment", "b"),
        ("u1", "city", "Oslo"),
        ("u1", "segment", "c"),
        ("u1", "segment", "a"),
        ("u1", "segment", "c"),
    )

    assert sorted(group_lines(table, SEGMENT, max_packed_key=0).to_pylist()) == [
        "u1^segment:a,c;city:Oslo\n",
        "u2^segment:b\n",
    ]


def test_empty_triples_give_no_lines():
    lines = group_lines(triples(), SEGMENT)

    assert isinstance(lines, pa.Array)
    assert len(lines) == 0


# -- user_hashes and split_by_partition ------------------------------------------------------


def fnv1a_64(data: bytes) -> int:
    """64-bit FNV-1a, written from its definition."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) % 2**64
    return value


def fmix64(value: int) -> int:
    """MurmurHash3's 64-bit finaliser, written from its definition."""
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) % 2**64
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) % 2**64
    return value ^ (value >> 33)


IDS = ["", "a", "foobar", "uid1", "KUID-0001", "é", "日本語", "😀", "x" * 300, "a\x00b"]


def test_reference_fnv1a_matches_published_test_vectors():
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_a_user_hash_is_fnv1a_of_utf8_bytes_mixed_by_fmix64():
    # Ids over 64 characters are hashed as their first and last 32 characters.
    keys = [user if len(user) <= 64 else user[:32] + user[-32:] for user in IDS]
    expected = [fmix64(fnv1a_64(key.encode())) for key in keys]

    assert user_hashes(pa.array(IDS)).tolist() == expected


def test_user_hashes_are_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import pyarrow as pa; from pipeline.krux.grouping import user_hashes; "
        f"print(user_hashes(pa.array({IDS!r})).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert output.strip() == str(user_hashes(pa.array(IDS)).tolist())


def test_user_hashes_do_not_depend_on_the_array_layout():
    padded = ["pad0", *IDS, "pad1"]
    expected = user_hashes(pa.array(IDS, pa.string())).tolist()

    layouts = [
        pa.array(IDS, pa.large_string()),
        pa.array(padded, pa.string())[1:-1],
        pa.array(padded, pa.large_string())[1:-1],
        pa.chunked_array([IDS[:3], IDS[3:4], [], IDS[4:]], pa.string()),
        pa.chunked_array([pa.array(padded, pa.string())[1:5], pa.array(IDS[4:])]),
    ]

    for layout in layouts:
        assert user_hashes(layout).tolist() == expected


def test_partitions_are_roughly_balanced():
    users = [f"user-{number:05d}" for number in range(10_000)]

    parts = split_by_partition(triples(*((user, "segment", "s") for user in users)), 10)

    # 1,000 expected per partition, standard deviation about 30.
    assert len(parts) == 10 and all(abs(part.num_rows - 1_000) < 150 for _, part in parts)


def test_split_by_partition_refuses_fewer_than_one_partition():
    with pytest.raises(ValueError, match="partitions"):
        split_by_partition(triples(("u1", "segment", "s")), 0)


def partition_of(users, partitions: int) -> list[int]:
    """Each user's partition, written from split_by_partition's docstring: its hash modulo `partitions`."""
    return (user_hashes(users) % np.uint64(partitions)).astype(np.int64).tolist()


def test_split_by_partition_puts_every_triple_in_its_users_partition_exactly_once():
    table = triples(
        *((f"user{number % 40}", "segment", f"seg{number}") for number in range(200)),
        *((f"user{number}", "city", "Paris") for number in range(0, 40, 3)),
    )

    parts = split_by_partition(table, 8)

    assert rows_of(pa.concat_tables(part for _, part in parts)) == rows_of(table)
    assert sorted(partition for partition, _ in parts) == [partition for partition, _ in parts]
    assert {partition for partition, _ in parts} == set(partition_of(table.column("user"), 8))
    for partition, part in parts:
        assert part.num_rows > 0
        assert set(partition_of(part.column("user"), 8)) == {partition}


def test_lines_of_all_partitions_are_the_lines_of_the_whole():
    table = triples(
        *((f"user{number % 30}", "segment", f"seg{number % 7}") for number in range(120)),
        *((f"user{number}", "age", str(number)) for number in range(0, 30, 4)),
    )

    per_partition = [group_lines(part, SEGMENT) for _, part in split_by_partition(table, 4)]

    assert sorted(line for lines in per_partition for line in lines.to_pylist()) == sorted(
        group_lines(table, SEGMENT).to_pylist()
    )


def test_split_of_no_triples_is_empty():
    assert split_by_partition(triples(), 4) == []


def test_a_long_user_id_is_hashed_from_its_ends():
    # Ends only, not 10 million byte steps; ids sharing their ends share a partition, and the
    # grouping stays exact because it compares whole ids.
    huge = "x" * 10_000_000
    users = pa.array([huge, "a" * 32 + "b" * 100 + "c" * 32, "a" * 32 + "d" * 100 + "c" * 32, "short"])

    hashes = user_hashes(users).tolist()

    assert hashes[0] == fmix64(fnv1a_64(b"x" * 64))
    assert hashes[1] == hashes[2] == fmix64(fnv1a_64(b"a" * 32 + b"c" * 32))
    assert user_hashes(pa.array([huge])).tolist() == [hashes[0]]


def test_split_by_partition_gives_each_part_only_its_own_ids_and_values():
    table = triples(*((f"user{number}", "segment", f"seg{number}") for number in range(300)))

    for partition, part in split_by_partition(table, 7):
        user, value = part.column("user").chunk(0), part.column("value").chunk(0)
        assert part.column("user").num_chunks == 1
        assert sorted(user.dictionary.to_pylist()) == sorted(set(user.to_pylist()))
        assert value.to_pylist() == [f"seg{name[4:]}" for name in user.to_pylist()]


def test_a_users_pass_comes_from_the_top_byte_of_its_hash():
    users = [f"user{number}" for number in range(200)]
    table = triples(*((user, "segment", "s") for user in users))

    for number in range(3):
        kept = grouping.in_pass(table, number, 3).column("user").to_pylist()
        assert kept == [user for user in users if (fmix64(fnv1a_64(user.encode())) >> 56) % 3 == number]


# -- sizing: partitions from the input, passes from a partition's triples ------------------------


def test_partitions_are_planned_from_the_row_count_about_750k_rows_each():
    assert grouping.plan_partitions(0) == 1
    assert grouping.plan_partitions(1) == 1
    assert grouping.plan_partitions(750_000) == 1
    assert grouping.plan_partitions(750_001) == 2
    assert grouping.plan_partitions(10_000_000) == 14
    assert grouping.plan_partitions(100_000_000) == 134


def test_a_500m_row_plan_has_hundreds_of_partitions_of_at_most_750k_rows():
    rows = 500_000_000
    partitions = grouping.plan_partitions(rows)

    assert 500 <= partitions <= 1_000  # hundreds, not a fixed 32
    assert rows / partitions <= grouping.PARTITION_ROWS
    assert rows / partitions > grouping.PARTITION_ROWS * 0.99  # no more partitions than needed


def test_an_unknown_row_count_plans_partitions_for_about_100m_rows():
    assert grouping.plan_partitions(None) == grouping.UNKNOWN_ROWS_PARTITIONS
    assert grouping.UNKNOWN_ROWS_PARTITIONS * grouping.PARTITION_ROWS >= 90_000_000


def test_partition_sizing_refuses_an_empty_partition_size():
    with pytest.raises(ValueError, match="rows_per_partition"):
        grouping.plan_partitions(10, 0)


def test_a_partition_is_grouped_in_as_many_passes_as_its_triples_need():
    assert grouping.passes_for(0) == 1
    assert grouping.passes_for(grouping.GROUP_TRIPLES) == 1
    assert grouping.passes_for(grouping.GROUP_TRIPLES + 1) == 2
    assert grouping.passes_for(10, budget=3) == 4
    assert grouping.passes_for(10**12) == grouping.SUB_BUCKETS  # a user's bucket is the finest cut


def test_passes_split_a_partition_by_user_and_their_lines_are_the_partitions_lines():
    table = triples(
        *((f"user{number % 50}", "segment", f"seg{number % 9}") for number in range(400)),
        *((f"user{number}", "city", f"c{number % 4}") for number in range(0, 50, 3)),
    )
    ((_, partition),) = split_by_partition(table, 1)

    passes = [grouping.in_pass(partition, number, 3) for number in range(3)]

    assert sum(part.num_rows for part in passes) == partition.num_rows
    users = [set(part.column("user").to_pylist()) for part in passes]
    assert all(users[i].isdisjoint(users[j]) for i in range(3) for j in range(i + 1, 3))
    assert all(part.num_rows for part in passes)  # 50 users spread over every pass
    lines = [line for part in passes for line in group_lines(part, SEGMENT).to_pylist()]
    assert sorted(lines) == sorted(group_lines(partition, SEGMENT).to_pylist())
    assert grouping.in_pass(partition, 0, 1) is partition


# -- hot users: one user with more triples than a pass ------------------------------------------


def hot_user_runs(runs=20, rows=500):
    """Runs of a placeholder user '0' on every row (the same few values again and again) and
    of ordinary users: each run repeats the hot user's values, as each batch of a table would."""
    return [
        to_triples(make_batch(
            ["0"] * rows + [f"user{i}" for i in range(rows)],
            [[f"seg{i % 7}"] for i in range(rows)] + [["seg1"]] * rows,
            country=[["DE" if i % 2 else "FR"] for i in range(2 * rows)],
        ), SEGMENT)
        for run in range(runs)
    ]


def test_a_hot_users_repeats_are_dropped_as_runs_come_so_memory_follows_distinct_values():
    runs = hot_user_runs()
    budget = 2_000  # triples: one run holds about 1,500 of them after its own repeats are dropped
    held = grouping.PassTriples(budget)
    peak = 0
    for run in runs:
        held.add(run)
        peak = max(peak, held.held)

    assert peak <= 2 * budget + runs[0].num_rows  # not the 20 runs' 30,000 triples
    assert group_lines(held.table(), SEGMENT).to_pylist() == group_lines(pa.concat_tables(runs), SEGMENT).to_pylist()
    assert "0^segment:seg0,seg1,seg2,seg3,seg4,seg5,seg6;country:DE,FR\n" in group_lines(held.table(), SEGMENT).to_pylist()


def test_a_user_with_more_distinct_values_than_the_limit_is_refused_by_name():
    batch = make_batch(["unknown"] * 5 + ["u1"], [[f"s{i}"] for i in range(5)] + [["s1"]])

    assert len(group_lines(to_triples(batch, SEGMENT), SEGMENT, max_values_per_user=5)) == 2
    with pytest.raises(InvalidRecordsError) as refused:
        group_lines(to_triples(batch, SEGMENT), SEGMENT, max_values_per_user=4)
    assert refused.value.exit_code == 3
    assert "user id 'unknown' has at least 5 distinct values" in str(refused.value)
    assert "--max-values-per-user 4" in str(refused.value)


def test_a_hot_user_past_the_limit_is_refused_while_its_runs_are_read():
    runs = [to_triples(make_batch(["0"] * 100, [[f"s{run}-{i}"] for i in range(100)]), SEGMENT) for run in range(50)]
    held = grouping.PassTriples(budget=300, max_values_per_user=1_000)

    with pytest.raises(InvalidRecordsError, match="user id '0' has at least"):
        for run in runs:
            held.add(run)
    assert held.held <= 2 * 1_000 + 100  # refused long before the 5,000 values were held

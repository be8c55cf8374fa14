"""plan_parts: S3's part limits (SPEC §4) planned from shard sizes alone."""

import random

import pytest

from pipeline.storage.multipart import (
    MAX_PART_BYTES,
    MAX_PARTS,
    MIN_PART_BYTES,
    Part,
    PartKind,
    Piece,
    plan_parts,
)

MiB = 1024**2
GiB = 1024**3


def check_plan(
    sizes, parts, *, min_bytes=MIN_PART_BYTES, max_bytes=MAX_PART_BYTES, max_parts=MAX_PARTS
):
    """Assert S3's rules and that every byte of every shard is in exactly one part."""
    assert len(parts) <= max_parts
    for number, part in enumerate(parts, 1):
        assert part.size <= max_bytes, f"part {number} is {part.size} bytes"
        if number < len(parts):
            assert part.size >= min_bytes, f"part {number} of {len(parts)} is {part.size} bytes"
        if part.kind is PartKind.COPY:
            assert len(part.pieces) == 1
        else:
            # Only small shards pass through the merging machine, and only whole.
            for piece in part.pieces:
                assert sizes[piece.shard] < min_bytes
                assert (piece.start, piece.stop) == (0, sizes[piece.shard])
    covered = {}
    for part in parts:
        for piece in part.pieces:
            assert piece.size > 0
            covered.setdefault(piece.shard, []).append((piece.start, piece.stop))
    expected = {shard: size for shard, size in enumerate(sizes) if size > 0}
    assert set(covered) == set(expected)
    for shard, ranges in covered.items():
        ranges.sort()
        assert ranges[0][0] == 0
        assert ranges[-1][1] == expected[shard]
        for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
            assert stop == start, f"shard {shard}: gap or overlap at byte {stop}"


def copy(shard, start, stop):
    return Part(PartKind.COPY, (Piece(shard, start, stop),))


def upload(*pieces):
    return Part(PartKind.UPLOAD, tuple(Piece(shard, 0, size) for shard, size in pieces))


def test_the_limits_are_amazons():
    assert MIN_PART_BYTES == 5 * 1024 * 1024
    assert MAX_PART_BYTES == 5 * 1024 * 1024 * 1024
    assert MAX_PARTS == 10_000


def test_big_shards_are_each_copied_whole_in_order():
    sizes = [64 * MiB, 5 * MiB, 100 * MiB]
    parts = plan_parts(sizes)
    assert parts == [copy(0, 0, 64 * MiB), copy(1, 0, 5 * MiB), copy(2, 0, 100 * MiB)]
    check_plan(sizes, parts)


def test_a_shard_of_exactly_the_minimum_is_copied_and_one_byte_less_is_uploaded():
    sizes = [5 * MiB - 1, 5 * MiB, 1]
    parts = plan_parts(sizes)
    assert parts == [copy(1, 0, 5 * MiB), upload((0, 5 * MiB - 1), (2, 1))]
    check_plan(sizes, parts)


def test_small_shards_are_grouped_up_to_the_minimum_and_the_short_group_is_last():
    # 2 + 2 + 2 MiB reaches 5 MiB at the third shard; 4 + 1 MiB is exactly 5 MiB; 3 MiB is left.
    sizes = [2 * MiB, 64 * MiB, 2 * MiB, 2 * MiB, 4 * MiB, 1 * MiB, 3 * MiB, 1 * MiB]
    parts = plan_parts(sizes)
    assert parts == [
        copy(1, 0, 64 * MiB),
        upload((0, 2 * MiB), (2, 2 * MiB), (3, 2 * MiB)),
        upload((4, 4 * MiB), (5, 1 * MiB)),
        upload((6, 3 * MiB), (7, 1 * MiB)),
    ]
    check_plan(sizes, parts)


def test_all_small_shards_under_the_minimum_make_one_upload_part():
    sizes = [1 * MiB, 1 * MiB, 1 * MiB]
    assert plan_parts(sizes) == [upload((0, MiB), (1, MiB), (2, MiB))]


def test_a_single_leftover_small_shard_is_copied_as_the_last_part():
    sizes = [10 * MiB, 3 * MiB]
    assert plan_parts(sizes) == [copy(0, 0, 10 * MiB), copy(1, 0, 3 * MiB)]


def test_a_single_small_shard_is_the_whole_plan():
    assert plan_parts([100]) == [copy(0, 0, 100)]


def test_zero_byte_shards_are_skipped():
    sizes = [0, 6 * MiB, 0, 2 * MiB, 0]
    parts = plan_parts(sizes)
    assert parts == [copy(1, 0, 6 * MiB), copy(3, 0, 2 * MiB)]
    check_plan(sizes, parts)


def test_no_bytes_at_all_plan_no_parts():
    assert plan_parts([]) == []
    assert plan_parts([0, 0]) == []


def test_a_shard_bigger_than_the_maximum_is_copied_as_near_equal_ranges():
    size = 11 * GiB + 2  # 11,811,160,066 bytes: 3 ranges of 3,937,053,355, one byte more first
    parts = plan_parts([size])
    assert parts == [
        copy(0, 0, 3_937_053_356),
        copy(0, 3_937_053_356, 7_874_106_711),
        copy(0, 7_874_106_711, 11_811_160_066),
    ]
    check_plan([size], parts)


def test_a_shard_just_over_the_maximum_splits_in_two_halves_above_the_minimum():
    size = MAX_PART_BYTES + 1
    parts = plan_parts([size, 1 * MiB])
    assert parts == [
        copy(0, 0, MAX_PART_BYTES // 2 + 1),
        copy(0, MAX_PART_BYTES // 2 + 1, size),
        copy(1, 0, 1 * MiB),
    ]
    check_plan([size, 1 * MiB], parts)


def test_ranges_with_small_limits_stay_within_them():
    sizes = [1000, 99, 2501, 7, 30, 500]
    parts = plan_parts(sizes, min_part_bytes=100, max_part_bytes=250, max_parts=50)
    check_plan(sizes, parts, min_bytes=100, max_bytes=250, max_parts=50)
    assert [part.size for part in parts if part.pieces[0].shard == 0] == [250, 250, 250, 250]


def test_five_hundred_million_rows_of_shards_fit_in_the_part_cap():
    # ~500M Krux lines gzip to roughly 125 GiB: 4,000 shards of 32 MiB (the shard target).
    sizes = [32 * MiB] * 4_000 + [17 * MiB, 3 * MiB]
    parts = plan_parts(sizes)
    assert len(parts) == 4_002
    assert all(part.kind is PartKind.COPY for part in parts)
    check_plan(sizes, parts)


def test_exactly_ten_thousand_copy_parts_are_allowed():
    sizes = [6 * MiB] * 10_000
    parts = plan_parts(sizes)
    assert len(parts) == 10_000
    check_plan(sizes, parts)


def test_more_copy_parts_than_the_cap_raise_with_the_numbers():
    with pytest.raises(ValueError, match=r"10001 server-side copy parts, more than the 10000"):
        plan_parts([6 * MiB] * 10_001)


def test_huge_shards_count_every_range_against_the_cap():
    with pytest.raises(ValueError, match=r"needs? 4 server-side copy parts.*more than the 3"):
        plan_parts([10 * GiB, 1 * GiB, 1 * GiB], max_parts=3)


def test_many_small_shards_make_bigger_groups_when_the_cap_requires():
    # 30,000 shards of 1 MiB: groups of 5 MiB would be 6,000 parts next to 6,000 copies.
    sizes = [6 * MiB] * 6_000 + [1 * MiB] * 30_000
    parts = plan_parts(sizes)
    assert len(parts) <= MAX_PARTS
    check_plan(sizes, parts)
    uploads = [part for part in parts if part.kind is PartKind.UPLOAD]
    assert min(part.size for part in uploads[:-1]) >= 8 * MiB  # 30,000 MiB over 4,000 slots


def test_small_shards_with_no_part_left_raise_with_the_numbers():
    with pytest.raises(ValueError, match=r"1 shards under 5242880 bytes .* 0 parts left of 2"):
        plan_parts([6 * MiB, 6 * MiB, 1 * MiB], max_parts=2)


def test_small_shards_too_many_even_for_the_biggest_groups_raise():
    # 40 shards of 90 bytes in 10 parts need groups of 360 bytes, over the 250-byte maximum.
    with pytest.raises(ValueError, match=r"do not fit"):
        plan_parts([90] * 40, min_part_bytes=100, max_part_bytes=250, max_parts=10)


@pytest.mark.parametrize(
    "sizes, limits",
    [
        ([5, 5, 5, 5, 5, 5, 5], dict(min_part_bytes=10, max_part_bytes=20, max_parts=3)),
        ([9, 9, 9, 9, 1], dict(min_part_bytes=10, max_part_bytes=20, max_parts=3)),
        ([25, 9, 9, 9, 9, 9, 9], dict(min_part_bytes=10, max_part_bytes=20, max_parts=5)),
        ([1] * 100, dict(min_part_bytes=10, max_part_bytes=20, max_parts=10)),
        ([19, 1, 18, 2, 0, 17, 3], dict(min_part_bytes=10, max_part_bytes=20, max_parts=7)),
    ],
)
def test_tight_caps_still_give_valid_plans(sizes, limits):
    parts = plan_parts(sizes, **limits)
    check_plan(
        sizes,
        parts,
        min_bytes=limits["min_part_bytes"],
        max_bytes=limits["max_part_bytes"],
        max_parts=limits["max_parts"],
    )


def test_random_shard_sets_give_valid_plans_or_a_reason():
    rng = random.Random(20261128)
    planned = 0
    for _ in range(2_000):
        count = rng.randint(0, 30)
        sizes = [rng.choice([0, rng.randint(1, 9), rng.randint(10, 60)]) for _ in range(count)]
        limits = dict(
            min_part_bytes=10, max_part_bytes=rng.randint(20, 40), max_parts=rng.randint(1, 30)
        )
        try:
            parts = plan_parts(sizes, **limits)
        except ValueError:
            # Refusing is only allowed when the shards cannot each be a part of their own.
            big = sum(-(-size // limits["max_part_bytes"]) for size in sizes if size >= 10)
            small = sum(1 for size in sizes if 0 < size < 10)
            assert big + min(small, 1) > limits["max_parts"] or small > 1
            continue
        planned += 1
        check_plan(
            sizes,
            parts,
            min_bytes=10,
            max_bytes=limits["max_part_bytes"],
            max_parts=limits["max_parts"],
        )
    assert planned > 1_000


def test_a_lower_part_minimum_is_a_parameter():
    assert plan_parts([100, 99, 1], min_part_bytes=100) == [copy(0, 0, 100), upload((1, 99), (2, 1))]


def test_inconsistent_limits_are_refused():
    with pytest.raises(ValueError, match="max >= 2 \\* min"):
        plan_parts([1], min_part_bytes=10, max_part_bytes=15)


def test_negative_sizes_are_refused():
    with pytest.raises(ValueError, match="negative"):
        plan_parts([5, -1])

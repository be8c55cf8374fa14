"""Users on several lines: the user keys and the sketch that counts repeats (pipeline/krux/repeats.py)."""

import pickle

import numpy as np
import pyarrow as pa
import pytest

from pipeline.krux.repeats import RepeatSketch, several_lines_warning, user_keys


def keys_of(*ids):
    return user_keys(pa.array(list(ids), pa.string()))


def test_equal_ids_give_equal_keys_whatever_the_array_layout():
    ids = ["u1", "a-much-longer-user-id-of-40-characters!!", "", "ü-nicode", "u1"]
    plain = user_keys(pa.array(ids, pa.string()))
    large = user_keys(pa.array(ids, pa.large_string()))
    sliced = user_keys(pa.array(["x", *ids], pa.string()).slice(1))
    chunked = user_keys(pa.chunked_array([ids[:2], ids[2:]], pa.string()))
    assert plain.tolist() == large.tolist() == sliced.tolist() == chunked.tolist()
    assert plain[0] == plain[4] and len(set(plain.tolist())) == 4
    assert not (plain & np.uint64(1)).any()  # the lowest bit is left for the sketch's mark


@pytest.mark.parametrize("a, b", [
    ("u1", "u2"), ("abcdefgh", "abcdefgi"), ("abcdefgh", "abcdefgh\x00"), ("", "\x00"),
    ("x" * 300 + "a", "x" * 300 + "b"),  # long ids differ past the word loop's reach
    ("x" * 255 + "a", "x" * 255 + "b"),
])
def test_different_ids_give_different_keys(a, b):
    first, second = keys_of(a, b)
    assert first != second
    assert keys_of(a)[0] == first  # and the same again in a batch of its own


def test_the_sketch_counts_users_seen_on_more_than_one_line_exactly():
    sketch = RepeatSketch()
    sketch.add(keys_of("a", "b", "a", "c"))  # a twice in one batch
    sketch.add(keys_of("b", "d"))  # b again, in another batch
    sketch.add(keys_of("a"))  # a a third time: still one user
    assert sketch.users_on_several_lines() == 2
    assert not sketch.sampled


def test_sketches_merge_and_travel_pickled_keeping_repeats_seen_on_either_side():
    left, right = RepeatSketch(), RepeatSketch()
    left.add(keys_of("a", "a", "b"))
    right.add(keys_of("b", "c"))
    merged = pickle.loads(pickle.dumps(left)).merge(pickle.loads(pickle.dumps(right)))
    assert merged.users_on_several_lines() == 2  # a (twice on the left), b (once on each side)


def test_no_lines_no_users():
    assert RepeatSketch().users_on_several_lines() == 0
    assert RepeatSketch().add(user_keys(pa.array([], pa.string()))).users_on_several_lines() == 0


def test_beyond_its_capacity_the_sketch_estimates_from_a_sample_of_users():
    # 200,000 users: the first 60,000 on two lines, the others on one; lines in two shuffled halves.
    ids = np.array([f"user-{n}" for n in range(200_000)] + [f"user-{n}" for n in range(60_000)])
    np.random.default_rng(7).shuffle(ids)
    left, right = RepeatSketch(capacity=20_000), RepeatSketch(capacity=20_000)
    left.add(user_keys(pa.array(ids[:130_000])))
    right.add(user_keys(pa.array(ids[130_000:])))
    merged = left.merge(right)
    assert merged.sampled
    assert abs(merged.users_on_several_lines() - 60_000) < 60_000 * 0.03  # a 20,000-user sample: within 3%


def test_a_sketch_at_capacity_stays_exact():
    sketch = RepeatSketch(capacity=3).add(keys_of("a", "b", "c", "a"))
    assert (sketch.users_on_several_lines(), sketch.sampled) == (1, False)


@pytest.mark.parametrize("users, estimated, start", [
    (1, False, "1 user is on more than one line: "),
    (12_345, False, "12,345 users are on more than one line: "),
    (2_668_636, True, "about 2,670,000 users are on more than one line: "),  # an estimate: 3 digits
])
def test_the_warning_counts_the_users_and_points_to_group_by_user(users, estimated, start):
    text = several_lines_warning(users, estimated)
    assert text == start + (
        "Salesforce takes a user's later line as replacing the earlier one, so only one of each such user's lines "
        "counts; --group-by-user writes one line per user with all of its segments and attributes"
    )

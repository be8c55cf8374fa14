"""`--max-drop`'s decision (SPEC §4), at its boundaries, with the words a user reads."""

import pytest

from pipeline.krux.drop import drop_refusal

URI = "s3://krux-partners/client-treasure-data/uploads/2026-11-27/first_party_segment.txt.gz"


def test_spec_example_is_refused_in_specs_words():
    assert drop_refusal(640, 10_000, 50, URI) == (
        f"640 lines is 94% fewer than the 10,000 of {URI} (--max-drop 50)"
    )


@pytest.mark.parametrize("lines, previous, max_drop", [
    (5_000, 10_000, 50),  # exactly 50% fewer: allowed
    (10_000, 10_000, 0),  # the same: allowed even with 0
    (12_000, 10_000, 0),  # more lines: never a drop
    (0, 0, 0),  # nothing before: nothing to lose
    (5, 0, 50),
    (667, 1_000, 33.3),  # exactly 33.3%, although the float 33.3 is a hair below it
    (0, 10_000, 100),  # --max-drop 100 allows even an empty file
])
def test_a_drop_up_to_max_drop_is_allowed(lines, previous, max_drop):
    assert drop_refusal(lines, previous, max_drop, URI) is None


@pytest.mark.parametrize("lines, previous, max_drop, words", [
    (4_999, 10_000, 50, "4,999 lines is 50.01% fewer than the 10,000"),  # one line past the limit
    (9_999, 10_000, 0, "9,999 lines is 0.01% fewer than the 10,000"),
    (666, 1_000, 33.3, "666 lines is 33.4% fewer than the 1,000"),
    (0, 10_000, 50, "0 lines is 100% fewer than the 10,000"),
    (1, 10_000, 50, "1 line is 99.99% fewer than the 10,000"),  # not "100%": one line is left
    (1, 1_000_000_000, 50, "1 line is 99.9999% fewer than the 1,000,000,000"),
    (600_000, 10_000_000, 25, "600,000 lines is 94% fewer than the 10,000,000"),
])
def test_a_drop_past_max_drop_is_refused_naming_both_counts_and_the_object(lines, previous, max_drop, words):
    assert drop_refusal(lines, previous, max_drop, URI) == f"{words} of {URI} (--max-drop {max_drop:g})"


def test_a_fractional_max_drop_is_shown_as_given():
    assert drop_refusal(80, 100, 12.5, URI).endswith("(--max-drop 12.5)")

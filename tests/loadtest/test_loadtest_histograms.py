"""morpheus_loadtest.histograms: percentiles of merged and subtracted histograms."""

from __future__ import annotations

import pytest
from morpheus_loadtest.histograms import merge, normalise, percentile, subtract


@pytest.mark.parametrize(
    ("histogram", "fraction", "expected"),
    [
        ({}, 0.95, None),
        ({10: 1}, 0.95, 10),
        # Locust's rule rounds up: the 95th of 100 is no faster than 5 of them.
        ({10: 96, 500: 4}, 0.95, 10),
        ({10: 95, 500: 5}, 0.95, 500),
        ({10: 94, 500: 6}, 0.95, 500),
        ({10: 50, 20: 50}, 0.50, 20),
        ({10: 50, 20: 50}, 0.99, 20),
        ({1: 1, 2: 1, 3: 1, 4: 1}, 0.5, 3),
        ({1: 1, 2: 1, 3: 1, 4: 1}, 1.0, 4),
        ({1: 1, 2: 1, 3: 1, 4: 1}, 0.0, 1),
    ],
)
def test_percentile_follows_locusts_rule(histogram, fraction, expected):
    """The figures locust.stats.calculate_response_time_percentile gives for these."""
    assert percentile(histogram, fraction) == expected


def test_percentile_refuses_a_fraction_outside_0_to_1():
    with pytest.raises(ValueError, match="fraction 95 is not between 0 and 1"):
        percentile({1: 1}, 95)


def test_merge_and_subtract():
    api = merge([{10: 2, 20: 1}, {20: 3, 30: 1}, {}])
    assert api == {10: 2, 20: 4, 30: 1}
    assert subtract(api, {10: 2, 20: 1}) == {20: 3, 30: 1}
    assert subtract(api, {}) == api


def test_subtract_refuses_a_snapshot_that_is_not_an_earlier_one():
    with pytest.raises(ValueError, match="10 ms: 3 before but 2 after"):
        subtract({10: 2}, {10: 3})


def test_normalise_reads_json_keys():
    assert normalise({"10": 2, "250": 1, "30": 0}) == {10: 2, 250: 1}

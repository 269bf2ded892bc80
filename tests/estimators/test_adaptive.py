"""How many samples an adaptive estimate asks for next."""

from depthscope.estimators._adaptive import SPREAD_MARGIN, more_samples


def test_more_samples_asks_for_what_the_spread_says_with_a_margin():
    # An error twice the target takes four times the samples, a quarter more for the estimated spread.
    assert more_samples(16, 0.04, 0.02, 1000) == round(SPREAD_MARGIN * 16 * 4) - 16
    assert more_samples(16, float("inf"), 0.02, 1000) == 16  # no spread measured yet: double
    assert more_samples(16, 0.0201, 0.02, 1000) >= 1  # always at least one more
    assert more_samples(16, 1.0, 0.02, 100) == 84  # never past the cap

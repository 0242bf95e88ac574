"""How often the supervisor asks providers about lagging consumers."""

from __future__ import annotations

import pytest

from bitcoin_supervisor.supervisor._laggards import (
    CHECK_INTERVAL_S,
    MAX_CHECK_INTERVAL_S,
    check_interval,
)


def test_a_quarter_of_the_shortest_limit_within_bounds() -> None:
    # The bundled 60 s limit: every 15 s, not every second (an idle daemon must not poll).
    assert check_interval([60.0, 120.0]) == pytest.approx(15.0)
    assert check_interval([8.0, 60.0]) == pytest.approx(2.0)
    # A short limit is checked at most once a second; a long one at least every 15 s.
    assert check_interval([0.5]) == CHECK_INTERVAL_S
    assert check_interval([3600.0]) == MAX_CHECK_INTERVAL_S
    assert check_interval([]) == MAX_CHECK_INTERVAL_S

"""A terminal closed while `tunefleet up` stops (its pane closed right after Ctrl-C):
the hang-up reaches `up` too, which must still stop everything it started, the
redis-server in its own session included."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.launcher import LaunchedStack

pytestmark = [pytest.mark.e2e]


def test_a_hang_up_in_the_middle_of_the_stop_leaves_no_process(tmp_path: Path) -> None:
    # Its drivers go live at once, as the suite's other stacks' do (their warm-up is
    # not what this test is about, and would hold it up to a minute).
    stack = LaunchedStack(tmp_path, wait_for_drivers=True, TUNEFLEET_DRIVER_WARM_WAIT_S="0")
    stack.start()
    # One second in, the drivers are still handing their jobs back and Redis is up.
    left = stack.stop(hang_up_after_s=1.0)
    assert left == [], f"still running after the hang-up: {left}\n{stack.log_tail()}"
    assert not (tmp_path / "redis" / "url").exists()  # removed as Redis stopped

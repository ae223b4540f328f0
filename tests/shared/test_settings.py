"""Settings is the leaf every module may import: reading it loads no Redis client, no
pandas, no torch and no Ray."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("redis", "pandas", "torch", "ray", "shared.jobs")


def test_importing_settings_loads_nothing_heavy() -> None:
    probe = (
        f"import sys, shared.settings; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_the_queue_policy_comes_from_settings() -> None:
    from shared.settings import Settings

    policy = Settings(max_queued=7, lease_s=4.5, queue_aging_s=60).queue_policy()
    assert (policy.max_queued, policy.lease_s, policy.aging_s) == (7, 4.5, 60)

"""StreamSlots: the event streams each tenant holds open on one gateway replica."""

from __future__ import annotations

from collections import Counter

from shared.errors import TooManyStreamsError


class StreamSlots:
    """How many event streams each tenant has open on this gateway replica, and the
    limit of them.

    Each replica counts its own, so with N replicas a tenant may hold up to N times the
    limit. The count lives in the process rather than in Redis: it then ends with the
    streams it counts (a replica that dies leaves no count behind that would need a
    lease to heal), and it costs no Redis call per stream. Only the event loop's thread
    touches it, so it needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def take(self, tenant: str) -> None:
        """Count one more open stream of ``tenant``; TooManyStreamsError at the limit."""
        if self._open[tenant] >= self.limit:
            raise TooManyStreamsError(
                f"tenant {tenant} already has {self._open[tenant]} open event streams, the "
                f"limit (TUNEFLEET_MAX_EVENT_STREAMS_PER_TENANT); close one, or poll "
                "GET /jobs/{id} instead"
            )
        self._open[tenant] += 1

    def give_back(self, tenant: str) -> None:
        self._open[tenant] -= 1
        if self._open[tenant] <= 0:
            del self._open[tenant]

    def open_count(self, tenant: str) -> int:
        return self._open[tenant]

"""How many push devices a person may have, and how often they may register one (issue 8).

Without limits one token registered 500 fake FCM tokens in a second: every post to that parent's
group then meant 500 sends. Two rules:

- At most ``devices_per_person`` devices (default 20). Registering one more removes the person's
  least recently registered device rather than refusing: a parent with a new phone expects it to
  just work, and the device that goes is the one most likely to be gone (a phone given away, a
  browser profile long deleted); refusing would leave them to find and delete an old device first,
  in settings they rarely open, while the new phone silently gets nothing. (store.register_device)
- At most ``device_registrations_per_hour`` registrations per person in any hour, new or repeated
  (429 with Retry-After). Counted in this process's memory: with several replicas a person gets that
  many per replica, which still bounds a flood; the cap above holds whatever the rate.
"""

import asyncio
import uuid
from collections import deque

from shared.errors import TooManyRequests

_HOUR = 3600.0


class RegistrationLimiter:
    """A sliding window of registration times per person. ``check(person_id)`` counts one more or
    raises TooManyRequests with the whole seconds until the oldest in the window leaves it."""

    def __init__(self, per_hour: int) -> None:
        self._per_hour = per_hour
        self._times: dict[uuid.UUID, deque[float]] = {}

    def check(self, person_id: uuid.UUID) -> None:
        now = asyncio.get_running_loop().time()
        times = self._times.setdefault(person_id, deque())
        while times and times[0] <= now - _HOUR:
            times.popleft()
        if len(times) >= self._per_hour:
            raise TooManyRequests(
                f"at most {self._per_hour} device registrations an hour; try again later",
                retry_after=max(1, int(times[0] + _HOUR - now) + 1),
            )
        times.append(now)
        if len(self._times) > 10_000:
            # Forget people with nothing in the window, so the map stays as small as the active set.
            for key in [k for k, v in self._times.items() if not v or v[-1] <= now - _HOUR]:
                del self._times[key]

"""Posts' settings: the shared ones, and when the weekly check of seed rule 5 looks for quiet groups.
The posting policy's numbers themselves are each school's settings (identity, SchoolChanged)."""

from datetime import time

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8082
    token_audience: str = "klaspost-posts"
    # The weekly check (posts.weekly.jobs) reminds the teachers of quiet groups from this ISO weekday
    # (1 Monday .. 7 Sunday) at this school-local time until the week ends; default Friday 12:00.
    quiet_check_weekday: int = Field(default=5, ge=1, le=7)
    quiet_check_from: time = time(12, 0)
    # How often the check looks (seconds): a reminder goes out at most this long after the time above.
    quiet_check_every_seconds: float = Field(default=300.0, gt=0)

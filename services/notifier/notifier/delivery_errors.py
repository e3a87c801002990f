"""How a delivery over any channel (mail, push) failed, so the caller knows whether to retry."""


class DeliveryFailed(Exception):
    """A notification could not be handed to the mail server or push service.

    ``permanent``: retrying the same message will not help; give up (and record why).
    ``gone``: the push subscription no longer exists; the caller deletes it.
    ``retry_after``: seconds the remote side asked us to wait before trying again.
    """

    def __init__(
        self,
        permanent: bool,
        reason: str,
        *,
        gone: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.reason = reason
        self.gone = gone
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"DeliveryFailed(permanent={self.permanent!r}, reason={self.reason!r}, "
            f"gone={self.gone!r}, retry_after={self.retry_after!r})"
        )

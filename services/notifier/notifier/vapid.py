"""VAPID keys (RFC 8292) that identify Klaspost to push services.

Run ``python -m notifier.vapid`` to print a fresh pair as environment lines for the notifier. The
public key is also the browser's ``applicationServerKey``: changing it orphans every subscription.
"""

import base64
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

# A token is made to last this long (RFC 8292 2: at most 24 hours) and used for every push to its
# push service until RENEW_SECONDS before it expires.
TOKEN_LIFETIME_SECONDS = 12 * 3600
RENEW_SECONDS = 3600


def generate_vapid_keys() -> tuple[str, str]:
    """(private, public): base64url of the raw 32-byte P-256 scalar and of the uncompressed point,
    the formats of VAPID_PRIVATE_KEY and VAPID_PUBLIC_KEY (and of npm web-push)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = _b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    return private, _public_point(key)


def load_private_key(private_key: str) -> ec.EllipticCurvePrivateKey:
    """The key of a VAPID_PRIVATE_KEY value; raises ValueError if it is not one."""
    raw = _b64url_decode(private_key)
    if len(raw) != 32:
        raise ValueError("a VAPID private key is the base64url of a 32-byte P-256 scalar")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


class VapidTokens:
    """The ``Authorization: vapid t=<JWT>, k=<public key>`` header (RFC 8292 3) for each push
    service. A token names its push service (``aud``, the endpoint's origin), our contact (``sub``)
    and its expiry (``exp``), nothing per message, so one token serves every push to that service
    until shortly before it expires: signing one (ES256) cost about as much CPU as the push's
    encryption, for every push."""

    def __init__(self, private_key: str, subject: str) -> None:
        self._vapid = Vapid(private_key=load_private_key(private_key))
        self._subject = subject
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (header value, renew at)

    def authorization(self, audience: str) -> str:
        """The header value for pushes to the push service at ``audience`` (scheme://host[:port])."""
        now = time.time()
        known = self._tokens.get(audience)
        if known is not None and now < known[1]:
            return known[0]
        expires = int(now) + TOKEN_LIFETIME_SECONDS
        # A fresh dict: py_vapid writes into the claims it is given.
        header: str = self._vapid.sign({"sub": self._subject, "aud": audience, "exp": expires})[
            "Authorization"
        ]
        self._tokens[audience] = (header, expires - RENEW_SECONDS)
        return header


def public_key_of(private_key: str) -> str:
    """The VAPID_PUBLIC_KEY value that belongs to a VAPID_PRIVATE_KEY value."""
    return _public_point(load_private_key(private_key))


def _public_point(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ValueError("not base64url") from exc


def main() -> None:
    private, public = generate_vapid_keys()
    print(f"VAPID_PRIVATE_KEY={private}")
    print(f"VAPID_PUBLIC_KEY={public}")


if __name__ == "__main__":
    main()

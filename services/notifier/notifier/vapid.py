"""VAPID keys (RFC 8292) that identify Klaspost to push services.

Run ``python -m notifier.vapid`` to print a fresh pair as environment lines for the notifier. The
public key is also the browser's ``applicationServerKey``: changing it orphans every subscription.
"""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


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

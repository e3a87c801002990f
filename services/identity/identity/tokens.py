"""Access-token signing: identity's half of `shared.tokens`.

Tokens are signed with one Ed25519 key whose kid is its RFC 7638 thumbprint, so the kid follows
from the key and cannot drift. During a rotation the previous public keys stay in the JWKS until
the tokens they signed have expired.
"""

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from identity.settings import Settings
from shared.tokens import ACCESS_TOKEN_TYPE, ALGORITHMS, Caller

# One token for the whole platform; each service checks that its own name is among them.
AUDIENCES: Final = ("klaspost-identity", "klaspost-posts", "klaspost-media", "klaspost-notifier")
ALGORITHM: Final = ALGORITHMS[0]


class SigningKeyError(RuntimeError):
    """The signing key is missing or unusable; identity must not start without one."""


class TokenSigner:
    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        ttl_seconds: int,
        audiences: Sequence[str] = AUDIENCES,
        previous_public_keys: Sequence[Ed25519PublicKey] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._private_key = private_key
        self._issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._audiences = list(audiences)
        self._clock = clock
        self.kid = jwk_thumbprint(private_key.public_key())
        published = [public_jwk(key) for key in (private_key.public_key(), *previous_public_keys)]
        # Keyed by kid so a retired key that equals the current one is listed once.
        self._published = list({jwk["kid"]: jwk for jwk in published}.values())

    @classmethod
    def from_settings(
        cls, settings: Settings, *, previous_public_keys: Sequence[Ed25519PublicKey] = ()
    ) -> "TokenSigner":
        return cls(
            load_signing_key(settings),
            issuer=settings.token_issuer,
            ttl_seconds=settings.token_ttl_seconds,
            previous_public_keys=previous_public_keys,
        )

    def issue(self, caller: Caller) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._issuer,
            "sub": str(caller.person_id),
            "aud": self._audiences,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_urlsafe(16),
            "typ": ACCESS_TOKEN_TYPE,
        }
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys to serve at /.well-known/jwks.json."""
        return {"keys": [dict(jwk) for jwk in self._published]}


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _x(public_key),
        "kid": jwk_thumbprint(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, without whitespace."""
    required = {"crv": "Ed25519", "kty": "OKP", "x": _x(public_key)}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key from TOKEN_SIGNING_KEY or TOKEN_SIGNING_KEY_FILE; never a made-up one."""
    inline, path = settings.token_signing_key, settings.token_signing_key_file
    if inline is not None and path is not None:
        raise SigningKeyError("set TOKEN_SIGNING_KEY or TOKEN_SIGNING_KEY_FILE, not both")
    if inline is not None:
        pem = inline.get_secret_value()
    elif path is not None:
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise SigningKeyError(f"cannot read TOKEN_SIGNING_KEY_FILE {path}: {exc.strerror}") from None
    else:
        raise SigningKeyError(
            "no token signing key: set TOKEN_SIGNING_KEY or TOKEN_SIGNING_KEY_FILE "
            "(make one with `python -m identity.keys`)"
        )
    return private_key_from_pem(pem)


def private_key_from_pem(pem: str) -> Ed25519PrivateKey:
    # Environment files often carry a PEM on one line with literal \n escapes.
    if "\n" not in pem.strip():
        pem = pem.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"token signing key is not a usable unencrypted PEM: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("token signing key must be an Ed25519 key")
    return key


def public_key_from_pem(pem: str) -> Ed25519PublicKey:
    """For `previous_public_keys`: the public half of a retired signing key."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise SigningKeyError(f"not a usable public key PEM: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("previous token key must be an Ed25519 key")
    return key


def generate_signing_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def _x(public_key: Ed25519PublicKey) -> str:
    return _b64url(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

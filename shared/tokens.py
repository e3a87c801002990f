"""Access-token verification, shared by every service.

Identity signs access tokens with Ed25519 (EdDSA) and publishes its public keys as a JWKS; every
service verifies tokens locally with those keys. A verified token becomes a `Caller`.
"""

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import jwt
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from shared.errors import ServiceUnavailable, Unauthorized
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Never the algorithm the token names: only what we sign with (no `none`, no HS256 key confusion).
ALGORITHMS: Final = ["EdDSA"]
ACCESS_TOKEN_TYPE: Final = "access"
REQUIRED_CLAIMS: Final = ["exp", "iat", "sub", "aud", "iss"]
LEEWAY_SECONDS: Final = 30
# Caps how often an unknown `kid` (which anyone can put in a token) can make us call identity.
MIN_REFRESH_SECONDS: Final = 30.0
# Refetch now and then even without an unknown kid, so a key that identity withdrew stops working.
MAX_KEYS_AGE_SECONDS: Final = 600.0
FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
# Verified tokens remembered per replica: a client sends the same token with every request for its
# lifetime (15 minutes), and checking an Ed25519 signature each time cost 17.5 % of a feed request.
VERIFIED_CACHE_SIZE: Final = 10_000


@dataclass(frozen=True)
class Caller:
    """Who is making the request, as stated by a verified access token: an account, nothing more.

    A token says who you are, never what you may do: one account can be a teacher at one school, a
    parent at two and an admin of a third. Each service decides per request from its own data —
    identity from its staff and guardianship tables, the others from their membership copies.
    """

    person_id: uuid.UUID


CALLER: Final = web.RequestKey("caller", Caller)


class TokenVerifier:
    """Verifies access tokens against identity's public keys, given inline or fetched from a URL."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        max_keys_age_seconds: float = MAX_KEYS_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        if (jwks is None) == (jwks_url is None):
            raise ValueError("give exactly one key source: jwks or jwks_url")
        if jwks_url is not None and session is None:
            raise ValueError("jwks_url needs an aiohttp ClientSession to fetch with")
        self._issuer = issuer
        self._audience = audience
        self._remote = (jwks_url, session) if jwks_url is not None and session is not None else None
        self._min_refresh = min_refresh_seconds
        self._max_age = max_keys_age_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = _usable_keys(jwks) if jwks is not None else None
        self._loaded_at = clock()
        self._last_fetch: float | None = None
        self._fetch_lock = asyncio.Lock()
        self._wall_clock = wall_clock
        self._cache_size = cache_size
        # token -> (caller, exp as Unix time, kid), least recently used first.
        self._verified: OrderedDict[str, tuple[Caller, float, str]] = OrderedDict()

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, session: aiohttp.ClientSession | None
    ) -> "TokenVerifier":
        # An empty variable counts as unset, as it does in a compose file's `JWKS_URL=`.
        if settings.jwks_json and settings.jwks_url:
            raise ValueError("set JWKS_JSON or JWKS_URL, not both")
        if settings.jwks_json:
            jwks = json.loads(settings.jwks_json)
            if not isinstance(jwks, dict):
                raise ValueError("JWKS_JSON must be a JSON object with a 'keys' list")
            return cls(issuer=settings.token_issuer, audience=settings.token_audience, jwks=jwks)
        if settings.jwks_url:
            return cls(
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                jwks_url=settings.jwks_url,
                session=session,
            )
        raise ValueError("no token keys: set JWKS_URL (identity's /.well-known/jwks.json) or JWKS_JSON")

    async def verify(self, token: str) -> Caller:
        """The token's caller, or Unauthorized (401) naming what is wrong; ServiceUnavailable (503)
        when identity's keys cannot be had. A token verified before is answered from memory until its
        ``exp`` (never past it, leeway or not) while the key that signed it is still identity's."""
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed access token") from None
        # jku, x5u and jwk headers are never read: keys come only from the configured source.
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("access token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthorized("access token has no key id")
        claims = self._decode(token, await self._key(kid))
        caller = _caller_from(claims)
        self._remember(token, caller, claims["exp"], kid)
        return caller

    def _remembered(self, token: str) -> Caller | None:
        entry = self._verified.get(token)
        if entry is None:
            return None
        caller, exp, kid = entry
        keys_current = self._clock() - self._loaded_at < self._max_age or self._remote is None
        if self._wall_clock() < exp and keys_current and self._keys is not None and kid in self._keys:
            self._verified.move_to_end(token)
            return caller
        # Expired, or its key withdrawn or due for a recheck: verified afresh (and refused if need be).
        del self._verified[token]
        return None

    def _remember(self, token: str, caller: Caller, exp: object, kid: str) -> None:
        if not isinstance(exp, int | float) or self._cache_size <= 0:
            return
        self._verified[token] = (caller, float(exp), kid)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("access token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("access token signature is invalid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("access token is not meant for this service") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("access token has the wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"access token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed access token") from None

    async def _key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        stale = self._clock() - self._loaded_at >= self._max_age
        if self._remote is not None and (keys is None or kid not in keys or stale):
            keys = await self._refresh(*self._remote)
        if keys is None or kid not in keys:
            raise Unauthorized("access token signed with an unknown key")
        return keys[kid]

    async def _refresh(self, url: str, session: aiohttp.ClientSession) -> dict[str, jwt.PyJWK]:
        async with self._fetch_lock:
            now = self._clock()
            # Waiters behind the lock find the fetch just done and reuse it.
            if self._last_fetch is None or now - self._last_fetch >= self._min_refresh:
                self._last_fetch = now
                try:
                    self._keys = await _fetch_keys(url, session)
                    self._loaded_at = now
                except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                    log.warning("fetching token keys from %s failed: %r", url, exc)
        if self._keys is None:
            # Not the caller's fault: a 401 would make clients drop a good token.
            raise ServiceUnavailable("token keys are unavailable")
        return self._keys


async def _fetch_keys(url: str, session: aiohttp.ClientSession) -> dict[str, jwt.PyJWK]:
    async with session.get(url, timeout=FETCH_TIMEOUT) as response:
        response.raise_for_status()
        # JWKS may be served as application/jwk-set+json; the content is checked below instead.
        document = await response.json(content_type=None)
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    return _usable_keys(document)


def _usable_keys(jwks: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """The EdDSA keys of a JWKS by kid; keys we could never accept are dropped here."""
    try:
        key_set = jwt.PyJWKSet.from_dict(dict(jwks))
    except jwt.PyJWTError as exc:
        raise ValueError(f"unusable JWKS: {exc}") from None
    keys = {key.key_id: key for key in key_set if key.key_id is not None and key.algorithm_name in ALGORITHMS}
    if not keys:
        raise ValueError("JWKS holds no EdDSA key with a kid")
    return keys


def _caller_from(claims: Mapping[str, Any]) -> Caller:
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise Unauthorized("not an access token")
    return Caller(person_id=_uuid_claim(claims, "sub"))


def _uuid_claim(claims: Mapping[str, Any], name: str) -> uuid.UUID:
    value = claims.get(name)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise Unauthorized(f"access token lacks a valid {name!r} claim")


def _bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer <access token>'")
    # A JWT is base64url and dots; other bytes (undecodable ones arrive as surrogates) are no token.
    if not token.isascii() or not token.isprintable():
        raise Unauthorized("malformed access token")
    return token


def auth_middleware(verifier: TokenVerifier) -> Middleware:
    """Puts the verified `Caller` under `CALLER`; a request without Authorization has no caller.

    A present but bad Authorization header is refused outright rather than treated as anonymous,
    so a client with a broken token learns it at once.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        authorization = request.headers.get(hdrs.AUTHORIZATION)
        if authorization is not None:
            request[CALLER] = await verifier.verify(_bearer_token(authorization))
        return await handler(request)

    return authenticate


def require_caller(request: web.Request) -> Caller:
    """The request's caller: 401 without a valid access token."""
    caller: Caller | None = request.get(CALLER)
    if caller is None:
        raise Unauthorized("an access token is required")
    return caller

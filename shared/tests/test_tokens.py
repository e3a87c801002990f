import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from identity.settings import Settings as IdentitySettings
from identity.tokens import (
    AUDIENCES,
    SigningKeyError,
    TokenSigner,
    generate_signing_key_pem,
    jwk_thumbprint,
    private_key_from_pem,
)
from shared.errors import AppError, ServiceUnavailable, Unauthorized
from shared.settings import ServiceSettings
from shared.tokens import CALLER, Caller, TokenVerifier, auth_middleware, require_caller

ISSUER = "klaspost-identity"
AUDIENCE = "klaspost-posts"
TEACHER = Caller(person_id=uuid.uuid4())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)]
    )


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def make_signer(key: Ed25519PrivateKey | None = None, **kwargs: Any) -> TokenSigner:
    return TokenSigner(key or Ed25519PrivateKey.generate(), issuer=ISSUER, ttl_seconds=900, **kwargs)


def make_verifier(signer: TokenSigner, *, audience: str = AUDIENCE, issuer: str = ISSUER) -> TokenVerifier:
    return TokenVerifier(issuer=issuer, audience=audience, jwks=signer.jwks())


def sign_claims(signer_key: Ed25519PrivateKey, claims: dict[str, Any], **headers: Any) -> str:
    kid = jwk_thumbprint(signer_key.public_key())
    return jwt.encode(claims, signer_key, algorithm="EdDSA", headers={"kid": kid, **headers})


def valid_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(TEACHER.person_id),
        "aud": list(AUDIENCES),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "j",
        "typ": "access",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    return caught.value.message


# --- issuing and verifying ------------------------------------------------------------------


async def test_issued_token_verifies_to_the_same_caller() -> None:
    signer = make_signer()

    assert await make_verifier(signer).verify(signer.issue(TEACHER)) == TEACHER


async def test_issued_token_carries_the_agreed_claims() -> None:
    signer = make_signer()

    token = signer.issue(TEACHER)

    claims = claims_of(token)
    assert jwt.get_unverified_header(token)["kid"] == signer.kid
    assert claims["aud"] == list(AUDIENCES)
    assert claims["typ"] == "access"
    assert claims["sub"] == str(TEACHER.person_id)
    # Who may do what is each service's decision from its own data, never a claim in the token.
    assert "role" not in claims
    assert "sid" not in claims
    assert claims["exp"] - claims["iat"] == signer.ttl_seconds == 900
    assert claims["jti"] != claims_of(signer.issue(TEACHER))["jti"]


async def test_every_service_audience_accepts_the_token() -> None:
    signer = make_signer()
    token = signer.issue(TEACHER)

    for audience in AUDIENCES:
        assert await make_verifier(signer, audience=audience).verify(token) == TEACHER


async def test_expired_token_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    old = make_signer(key, clock=lambda: time.time() - 3600)

    assert "expired" in await refused(make_verifier(make_signer(key)), old.issue(TEACHER))


async def test_token_just_past_expiry_is_accepted_within_the_leeway() -> None:
    key = Ed25519PrivateKey.generate()
    signer = make_signer(key, clock=lambda: time.time() - 900 - 10)

    assert await make_verifier(signer).verify(signer.issue(TEACHER)) == TEACHER


async def test_token_for_another_audience_is_refused() -> None:
    signer = make_signer()

    message = await refused(make_verifier(signer, audience="klaspost-elsewhere"), signer.issue(TEACHER))

    assert "not meant for this service" in message


async def test_token_from_another_issuer_is_refused() -> None:
    signer = make_signer()

    assert "issuer" in await refused(make_verifier(signer, issuer="someone-else"), signer.issue(TEACHER))


async def test_tampered_claims_are_refused() -> None:
    signer = make_signer()
    header, _, signature = signer.issue(TEACHER).split(".")
    promoted = b64url(json.dumps(valid_claims(sub=str(uuid.uuid4()))).encode())

    message = await refused(make_verifier(signer), f"{header}.{promoted}.{signature}")

    assert "signature is invalid" in message


async def test_unsigned_token_with_alg_none_is_refused() -> None:
    signer = make_signer()
    token = raw_token({"alg": "none", "typ": "JWT", "kid": signer.kid}, valid_claims())

    assert "algorithm not allowed" in await refused(make_verifier(signer), token)


async def test_hs256_signed_with_the_public_key_as_secret_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    signer = make_signer(key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = raw_token({"alg": "HS256", "typ": "JWT", "kid": signer.kid}, valid_claims()).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()

    message = await refused(make_verifier(signer), f"{unsigned}.{b64url(signature)}")

    assert "algorithm not allowed" in message


async def test_token_signed_with_an_unknown_key_is_refused() -> None:
    stranger = make_signer()

    assert "unknown key" in await refused(make_verifier(make_signer()), stranger.issue(TEACHER))


async def test_token_without_kid_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    token = jwt.encode(valid_claims(), key, algorithm="EdDSA")

    assert "no key id" in await refused(make_verifier(make_signer(key)), token)


async def test_token_that_is_not_an_access_token_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    token = sign_claims(key, valid_claims(typ="refresh"))

    assert "not an access token" in await refused(make_verifier(make_signer(key)), token)


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud", "iss"])
async def test_token_without_a_required_claim_is_refused(claim: str) -> None:
    key = Ed25519PrivateKey.generate()
    token = sign_claims(key, valid_claims(**{claim: None}))

    assert f"'{claim}'" in await refused(make_verifier(make_signer(key)), token)


@pytest.mark.parametrize(("claim", "value"), [("sub", "42"), ("sub", "")])
async def test_token_with_an_unusable_identity_claim_is_refused(claim: str, value: Any) -> None:
    key = Ed25519PrivateKey.generate()
    token = sign_claims(key, valid_claims(**{claim: value}))

    assert f"'{claim}'" in await refused(make_verifier(make_signer(key)), token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "Bearer x.y.z"])
async def test_malformed_token_is_refused(token: str) -> None:
    assert "malformed" in await refused(make_verifier(make_signer()), token)


# --- key sources ------------------------------------------------------------------------------


class JwksServer:
    """A stand-in for identity's /.well-known/jwks.json that counts how often it is asked."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.status = 200
        self.hits = 0
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._serve)
        self.server = TestServer(app)

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response(self.jwks, status=self.status)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/.well-known/jwks.json"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


IdentityKeys = tuple[JwksServer, TokenSigner, Ed25519PrivateKey]


@pytest.fixture
async def identity_keys() -> AsyncIterator[IdentityKeys]:
    key = Ed25519PrivateKey.generate()
    signer = make_signer(key)
    jwks_server = JwksServer(signer.jwks())
    await jwks_server.server.start_server()
    yield jwks_server, signer, key
    await jwks_server.server.close()


def url_verifier(jwks_server: JwksServer, http: aiohttp.ClientSession, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_server.url, session=http, clock=clock
    )


async def test_keys_are_fetched_once_from_the_jwks_url(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    verifier = url_verifier(jwks_server, http, FakeClock())

    for _ in range(3):
        assert await verifier.verify(signer.issue(TEACHER)) == TEACHER

    assert jwks_server.hits == 1


async def test_concurrent_first_requests_share_one_fetch(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    verifier = url_verifier(jwks_server, http, FakeClock())

    callers = await asyncio.gather(*(verifier.verify(signer.issue(TEACHER)) for _ in range(10)))

    assert set(callers) == {TEACHER}
    assert jwks_server.hits == 1


async def test_new_kid_after_rotation_triggers_a_refresh(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, old_signer, old_key = identity_keys
    clock = FakeClock()
    verifier = url_verifier(jwks_server, http, clock)
    await verifier.verify(old_signer.issue(TEACHER))
    new_signer = make_signer(previous_public_keys=[old_key.public_key()])
    jwks_server.jwks = new_signer.jwks()
    clock.now += 31

    assert await verifier.verify(new_signer.issue(TEACHER)) == TEACHER
    assert await verifier.verify(old_signer.issue(TEACHER)) == TEACHER
    assert jwks_server.hits == 2


async def test_unknown_kids_refresh_at_most_once_per_interval(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    clock = FakeClock()
    verifier = url_verifier(jwks_server, http, clock)
    await verifier.verify(signer.issue(TEACHER))
    clock.now += 31
    stranger = make_signer()

    for _ in range(5):
        assert "unknown key" in await refused(verifier, stranger.issue(TEACHER))
        clock.now += 5
    assert jwks_server.hits == 2

    clock.now += 30
    assert "unknown key" in await refused(verifier, stranger.issue(TEACHER))
    assert jwks_server.hits == 3


async def test_withdrawn_key_stops_working_once_the_cache_is_old(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    clock = FakeClock()
    verifier = url_verifier(jwks_server, http, clock)
    await verifier.verify(signer.issue(TEACHER))
    jwks_server.jwks = make_signer().jwks()
    clock.now += 601

    assert "unknown key" in await refused(verifier, signer.issue(TEACHER))


async def test_unreachable_jwks_is_a_service_outage_not_a_bad_token(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    jwks_server.status = 500
    verifier = url_verifier(jwks_server, http, FakeClock())

    with pytest.raises(ServiceUnavailable):
        await verifier.verify(signer.issue(TEACHER))


async def test_jku_header_is_never_followed(identity_keys: IdentityKeys, http: aiohttp.ClientSession) -> None:
    attacker_server, attacker, attacker_key = identity_keys
    victim = make_signer()
    verifier = make_verifier(victim)
    forged = sign_claims(attacker_key, valid_claims(), jku=attacker_server.url)
    forged_with_victims_kid = jwt.encode(
        valid_claims(),
        attacker_key,
        algorithm="EdDSA",
        headers={"kid": victim.kid, "jku": attacker_server.url, "jwk": attacker.jwks()["keys"][0]},
    )

    assert "unknown key" in await refused(verifier, forged)
    assert "signature is invalid" in await refused(verifier, forged_with_victims_kid)
    assert attacker_server.hits == 0


async def test_genuine_token_with_a_jku_header_still_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    token = sign_claims(key, valid_claims(), jku="https://attacker.example/jwks.json")

    assert await make_verifier(make_signer(key)).verify(token) == TEACHER


def test_verifier_from_settings_takes_inline_jwks() -> None:
    signer = make_signer()
    settings = ServiceSettings(
        database_url="postgresql://unused", token_audience=AUDIENCE, jwks_json=json.dumps(signer.jwks())
    )

    verifier = TokenVerifier.from_settings(settings, None)

    assert isinstance(verifier, TokenVerifier)


@pytest.mark.parametrize(
    ("jwks_url", "jwks_json", "problem"),
    [
        (None, None, "no token keys"),
        ("http://identity/.well-known/jwks.json", None, "ClientSession"),
        ("http://identity/.well-known/jwks.json", "{}", "not both"),
    ],
)
def test_verifier_from_settings_refuses_a_missing_or_ambiguous_key_source(
    jwks_url: str | None, jwks_json: str | None, problem: str
) -> None:
    settings = ServiceSettings(database_url="postgresql://unused", jwks_url=jwks_url, jwks_json=jwks_json)

    with pytest.raises(ValueError, match=problem):
        TokenVerifier.from_settings(settings, None)


def test_verifier_refuses_a_jwks_without_eddsa_keys() -> None:
    with pytest.raises(ValueError, match="EdDSA"):
        TokenVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}
        )


# --- middleware -------------------------------------------------------------------------------


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for the lead's error middleware, which runs outside auth_middleware."""
    try:
        return await handler(request)
    except AppError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], TokenSigner]]:
    signer = make_signer()

    async def teachers_only(request: web.Request) -> web.Response:
        return web.json_response({"person_id": str(require_caller(request).person_id)})

    async def public(request: web.Request) -> web.Response:
        return web.json_response({"signed_in": request.get(CALLER) is not None})

    app = web.Application(middlewares=[render_errors, auth_middleware(make_verifier(signer))])
    app.router.add_get("/teachers", teachers_only)
    app.router.add_get("/public", public)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, signer


async def test_middleware_gives_the_handler_the_caller(
    client: tuple[TestClient[web.Request, web.Application], TokenSigner],
) -> None:
    http_client, signer = client

    response = await http_client.get(
        "/teachers", headers={"Authorization": f"Bearer {signer.issue(TEACHER)}"}
    )

    assert response.status == 200
    assert await response.json() == {"person_id": str(TEACHER.person_id)}


async def test_request_without_token_has_no_caller(
    client: tuple[TestClient[web.Request, web.Application], TokenSigner],
) -> None:
    http_client, _ = client

    public = await http_client.get("/public")
    protected = await http_client.get("/teachers")

    assert (public.status, await public.json()) == (200, {"signed_in": False})
    assert protected.status == 401


async def test_bad_token_is_refused_even_where_none_is_needed(
    client: tuple[TestClient[web.Request, web.Application], TokenSigner],
) -> None:
    http_client, _ = client

    response = await http_client.get("/public", headers={"Authorization": "Bearer not.a.token"})

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token", "Bearer \udcff\udcfe", "Bearer ab\u00e9.cd.ef"],
)
async def test_authorization_that_is_not_a_bearer_token_is_refused(
    client: tuple[TestClient[web.Request, web.Application], TokenSigner], authorization: str
) -> None:
    http_client, _ = client

    response = await http_client.get("/public", headers={"Authorization": authorization})

    assert response.status == 401


async def test_bearer_scheme_is_case_insensitive(
    client: tuple[TestClient[web.Request, web.Application], TokenSigner],
) -> None:
    http_client, signer = client

    response = await http_client.get(
        "/teachers", headers={"Authorization": f"bearer {signer.issue(TEACHER)}"}
    )

    assert response.status == 200


# --- signing keys -----------------------------------------------------------------------------


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 8037 appendix A: the Ed25519 example key and its thumbprint.
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")

    signer = make_signer(Ed25519PrivateKey.from_private_bytes(d))

    assert signer.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert signer.jwks() == {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                "alg": "EdDSA",
                "use": "sig",
            }
        ]
    }


async def test_tokens_of_the_previous_key_verify_during_rotation() -> None:
    old_key = Ed25519PrivateKey.generate()
    old = make_signer(old_key)
    new = make_signer(previous_public_keys=[old_key.public_key(), old_key.public_key()])

    verifier = make_verifier(new)

    assert [jwk["kid"] for jwk in new.jwks()["keys"]] == [new.kid, old.kid]
    assert await verifier.verify(old.issue(TEACHER)) == TEACHER
    assert await verifier.verify(new.issue(TEACHER)) == TEACHER


def test_signer_refuses_to_start_without_a_key() -> None:
    with pytest.raises(SigningKeyError, match="TOKEN_SIGNING_KEY"):
        TokenSigner.from_settings(IdentitySettings(database_url="postgresql://unused"))


def test_signer_loads_its_key_from_a_file(tmp_path: Path) -> None:
    pem = generate_signing_key_pem()
    (tmp_path / "signing.pem").write_text(pem)

    signer = TokenSigner.from_settings(
        IdentitySettings(
            database_url="postgresql://unused", token_signing_key_file=str(tmp_path / "signing.pem")
        )
    )

    assert signer.kid == jwk_thumbprint(private_key_from_pem(pem).public_key())


def test_signer_accepts_a_one_line_pem_with_escaped_newlines() -> None:
    pem = generate_signing_key_pem()
    settings = IdentitySettings(
        database_url="postgresql://unused", token_signing_key=SecretStr(pem.replace("\n", "\\n"))
    )

    assert TokenSigner.from_settings(settings).kid == jwk_thumbprint(private_key_from_pem(pem).public_key())


@pytest.mark.parametrize(
    "pem", ["not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_signer_refuses_an_unusable_key(pem: str) -> None:
    with pytest.raises(SigningKeyError):
        TokenSigner.from_settings(IdentitySettings(database_url="postgresql://unused", token_signing_key=pem))


def test_generated_signing_keys_are_fresh_ed25519_keys() -> None:
    first, second = generate_signing_key_pem(), generate_signing_key_pem()

    assert first != second
    assert isinstance(private_key_from_pem(first), Ed25519PrivateKey)


# --- remembering verified tokens ----------------------------------------------------------------


class CountingVerifier(TokenVerifier):
    """Counts the full verifications (signature and claims), i.e. the requests not answered from memory."""

    checks = 0

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        self.checks += 1
        return super()._decode(token, key)


def counting_verifier(signer: TokenSigner, **kwargs: Any) -> CountingVerifier:
    return CountingVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=signer.jwks(), **kwargs)


async def test_a_verified_token_is_checked_once_while_it_is_valid() -> None:
    signer = make_signer()
    verifier = counting_verifier(signer)
    token = signer.issue(TEACHER)

    for _ in range(5):
        assert await verifier.verify(token) == TEACHER

    assert verifier.checks == 1


async def test_a_remembered_token_is_never_answered_from_memory_past_its_exp() -> None:
    signer = make_signer()
    wall = FakeClock()
    wall.now = time.time()
    verifier = counting_verifier(signer, wall_clock=wall)
    token = signer.issue(TEACHER)
    await verifier.verify(token)

    wall.now = claims_of(token)["exp"]
    await verifier.verify(token)  # within the leeway: verified afresh, not remembered

    assert verifier.checks == 2


async def test_a_token_past_its_exp_is_verified_afresh_each_time() -> None:
    key = Ed25519PrivateKey.generate()
    # Issued 905 s ago: valid for 900 s, accepted within the 30 s leeway but never from memory.
    signer = make_signer(key, clock=lambda: time.time() - 905)
    wall = FakeClock()
    wall.now = time.time()
    verifier = counting_verifier(signer, wall_clock=wall)
    token = signer.issue(TEACHER)
    assert await verifier.verify(token) == TEACHER
    assert verifier.checks == 1

    await verifier.verify(token)
    assert verifier.checks == 2


async def test_a_remembered_token_stops_working_when_its_key_is_withdrawn(
    identity_keys: IdentityKeys, http: aiohttp.ClientSession
) -> None:
    jwks_server, signer, _ = identity_keys
    clock = FakeClock()
    verifier = url_verifier(jwks_server, http, clock)
    token = signer.issue(TEACHER)
    assert await verifier.verify(token) == TEACHER
    jwks_server.jwks = make_signer().jwks()
    clock.now += 601

    assert "unknown key" in await refused(verifier, token)


async def test_remembered_tokens_are_bounded_least_recently_used_first() -> None:
    signer = make_signer()
    verifier = counting_verifier(signer, cache_size=2)
    first, second, third = (signer.issue(TEACHER) for _ in range(3))
    for token in (first, second, first, third):  # `second` is the least recently used when `third` comes
        await verifier.verify(token)
    assert verifier.checks == 3

    await verifier.verify(first)
    assert verifier.checks == 3
    await verifier.verify(second)
    assert verifier.checks == 4


async def test_a_refused_token_is_not_remembered() -> None:
    signer = make_signer()
    verifier = counting_verifier(signer)
    token = make_signer().issue(TEACHER)  # another key

    for _ in range(2):
        assert "unknown key" in await refused(verifier, token)
    assert await verifier.verify(signer.issue(TEACHER)) == TEACHER

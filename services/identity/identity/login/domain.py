"""Login and password shapes."""

from typing import Literal

from pydantic import BaseModel, Field

from identity.emails import EmailAddress
from identity.schools.domain import Input


class Login(Input):
    email: EmailAddress
    password: str = Field(min_length=1, max_length=1024)


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Single use: POST it to /auth/refresh for a new access token and the next refresh token."
    )
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires unused.")


_OPAQUE_TOKEN = r"^[A-Za-z0-9_-]+$"


class Refresh(Input):
    """A refresh token from the last login or refresh."""

    refresh_token: str = Field(min_length=20, max_length=200, pattern=_OPAQUE_TOKEN)


class RequestReset(Input):
    email: EmailAddress


class ResetRequested(BaseModel):
    """The same answer whether the address has an account or not."""

    message: str = "If an account has this address, a link to set its password has been sent to it."


class SetPassword(Input):
    """Set a password with the token from a reset or welcome email."""

    token: str = Field(min_length=20, max_length=200, pattern=_OPAQUE_TOKEN)
    password: str = Field(min_length=10, max_length=128)


class Jwk(BaseModel):
    """An Ed25519 public key (RFC 8037) that verifies access tokens."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class Jwks(BaseModel):
    keys: list[Jwk]

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


class SetPassword(Input):
    """Set a password with the token from a reset or welcome email."""

    token: str = Field(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
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

"""Login and password shapes."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from identity.emails import EmailAddress
from identity.schools.domain import Input, Password
from shared.fields import Matches


class Login(Input):
    email: EmailAddress
    # As typed: a password is never trimmed.
    password: Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=1024)]


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Single use: POST it to /auth/refresh for a new access token and the next refresh token."
    )
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires unused.")


_OPAQUE_TOKEN = r"^[A-Za-z0-9_-]{20,200}$"
OpaqueToken = Annotated[str, Matches(_OPAQUE_TOKEN, "not a token we hand out: 20 to 200 of A-Z a-z 0-9 _ -")]


class Refresh(Input):
    """A refresh token from the last login or refresh."""

    refresh_token: OpaqueToken


class RequestReset(Input):
    email: EmailAddress


class ResetRequested(BaseModel):
    """The same answer whether the address has an account or not."""

    message: str = "If an account has this address, a link to set its password has been sent to it."


class SetPassword(Input):
    """Set a password with the token from a reset or welcome email."""

    token: OpaqueToken
    password: Password


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

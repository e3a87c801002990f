"""Identity's settings: the shared ones plus token signing and operator access."""

from pydantic import SecretStr

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8081
    # PEM of the Ed25519 private key that signs access tokens; TOKEN_SIGNING_KEY_FILE names a file instead.
    token_signing_key: SecretStr | None = None
    token_signing_key_file: str | None = None
    token_ttl_seconds: int = 900
    # Bearer key for the operator's school-creation endpoint; unset disables the endpoint.
    operator_api_key: SecretStr | None = None
    # How often the school-year switch checks each school's local date (seconds): a switch happens
    # at most this long after local midnight.
    school_year_check_seconds: float = 30.0
    # How often pending invitations are checked for a reminder (seconds); the days between reminders
    # and their number are school settings.
    invitation_reminders_every_seconds: float = 900.0
    # How often a launch whose replica stopped is looked for and finished (seconds).
    invitation_launch_resume_seconds: float = 15.0

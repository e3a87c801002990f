"""Identity's settings: the shared ones plus token signing, operator access, login throttling,
refresh tokens and password resets."""

from pydantic import Field, SecretStr

from shared.clients import TrustedProxies
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

    # Reverse proxies whose X-Forwarded-For names the client (shared.clients): CIDRs or addresses,
    # comma-separated. Empty: the direct peer is the client, and the header is ignored.
    trusted_proxies: TrustedProxies = []

    # Login throttling (identity.login.throttle). Failures of one address from one client (its known
    # device, else its IP address): this many are free, then each next attempt waits a delay that
    # starts at login_first_delay_seconds and doubles per failure up to login_max_delay_seconds.
    login_free_failures: int = Field(default=5, ge=1)
    login_first_delay_seconds: float = Field(default=1.0, gt=0)
    login_max_delay_seconds: float = Field(default=900.0, gt=0)
    login_pair_window_seconds: int = Field(default=86_400, gt=0)
    # Failures of one address from all clients together: past the soft limit, a client that never
    # logged in to it has its password checked a little later (identity.login.throttle), never refused.
    login_address_soft_limit: int = Field(default=100, ge=1)
    login_address_window_seconds: int = Field(default=3_600, gt=0)
    # Failures from one client IP address, for all addresses: high enough for a school behind one NAT
    # address on a Monday morning; clients known to the address are exempt.
    login_client_limit: int = Field(default=500, ge=1)
    login_client_window_seconds: int = Field(default=900, gt=0)
    # How long a successful login makes a device (cookie) or IP address known to the account.
    known_client_days: int = Field(default=90, ge=1)

    # Refresh tokens: one family per login, rotated at every use. A family ends after this long
    # without a refresh, and in any case this long after the login.
    refresh_idle_days: int = Field(default=30, ge=1)
    refresh_max_days: int = Field(default=180, ge=1)

    # Password reset mails asked for per address and per client IP (sliding hour), and attempts to
    # set a password with a link per client IP (sliding 15 minutes).
    reset_limit_per_address: int = Field(default=3, ge=1)
    reset_limit_per_client: int = Field(default=30, ge=1)
    set_password_limit_per_client: int = Field(default=30, ge=1)
    # How often pending invitations are checked for a reminder (seconds); the days between reminders
    # and their number are school settings.
    invitation_reminders_every_seconds: float = 900.0
    # How often a launch whose replica stopped is looked for and finished (seconds).
    invitation_launch_resume_seconds: float = 15.0

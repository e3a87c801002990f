"""Posts' settings: the shared ones; posting-policy defaults come with a later issue."""

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8082
    token_audience: str = "klaspost-posts"

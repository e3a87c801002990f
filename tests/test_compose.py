"""docker-compose.yml, the Dockerfile and deploy/ fit together as an operator's `docker compose up`
would use them. No Docker engine runs here, so these tests read the files, interpolate them the way
compose does (with a stand-in .env made from deploy/env.example) and hold every piece against the
code it configures: settings, ports, routes, database roles, credentials."""

import ast
import importlib.metadata
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import SecretStr

from identity.app import spec as identity_spec
from identity.settings import Settings as IdentitySettings
from media.app import spec as media_spec
from media.settings import Settings as MediaSettings
from notifier.app import spec as notifier_spec
from notifier.settings import Settings as NotifierSettings
from posts.app import spec as posts_spec
from posts.settings import Settings as PostsSettings
from shared.app import ServiceSpec, create_app
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
POSTGRES_INIT = ROOT / "deploy" / "postgres" / "init.sh"
OFFLINE_COMPOSE = ROOT / "deploy" / "offline" / "compose.yml"

OURS: dict[str, tuple[Callable[[], ServiceSpec], type[ServiceSettings]]] = {
    "identity": (identity_spec, IdentitySettings),
    "posts": (posts_spec, PostsSettings),
    "media": (media_spec, MediaSettings),
    "notifier": (notifier_spec, NotifierSettings),
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, and $$ for "$".
_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        operator, argument = match.group(3), match.group(4)
        value = env.get(name)
        missing = value is None or (value == "" and operator is not None and operator.startswith(":"))
        if missing and operator is not None and operator.endswith("-"):
            return argument
        if missing and operator is not None and operator.endswith("?"):
            raise MissingVariable(f"{name}: {argument}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def referenced_variables(text: str) -> dict[str, str | None]:
    """Each variable the compose file uses, with its operator (None for a plain ${NAME})."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text):
        name = match.group(2) or match.group(5)
        if name:
            found[name] = match.group(3)
    return found


def documented_variables() -> tuple[set[str], set[str]]:
    """(required, optional): `NAME=` lines of deploy/env.example, and the commented `# NAME=` ones."""
    required, optional = set(), set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=.*", line):
            required.add(match.group(1))
        elif match := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=\S*", line):
            optional.add(match.group(1))
    return required, optional


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    """A stand-in .env: every documented required variable, with a value that is safe in a URL."""
    required, _ = documented_variables()
    values = {name: f"{name.lower().replace('_', '-')}-value" for name in required}
    # Checked at start-up for its form (a contact push services accept), so it needs a real one.
    values["VAPID_SUBJECT"] = "mailto:beheer@klaspost.nl"
    return values


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], dotenv: dict[str, str]) -> dict[str, Any]:
    interpolated = interpolate_tree(raw, dotenv)
    assert isinstance(interpolated, dict)
    return interpolated


def environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def settings_of(compose: dict[str, Any], service: str) -> ServiceSettings:
    _, settings_class = OURS[service]
    # An empty variable is an unset one (ServiceSettings.env_ignore_empty): compose passes the
    # optional settings as ${NAME:-}.
    fields = {key.lower(): value for key, value in environment(compose, service).items() if value != ""}
    return settings_class.model_validate(fields)


def routes_of(compose: dict[str, Any], service: str) -> set[tuple[str, str]]:
    spec, _ = OURS[service]
    app = create_app(spec(), settings_of(compose, service))
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}


def host_and_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of each `ports` entry, short syntax: [ip:]host:container[/proto]."""
    pairs = []
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split("/")[0].split(":")
        pairs.append((int(host), int(container)))
    return pairs


def test_compose_asks_for_exactly_the_variables_that_env_example_documents(raw: dict[str, Any]) -> None:
    used = referenced_variables(COMPOSE.read_text())
    required = {name for name, operator in used.items() if operator in (None, ":?", "?")}
    optional = {name for name, operator in used.items() if operator in (":-", "-")}
    documented_required, documented_optional = documented_variables()
    assert required == documented_required
    assert optional == documented_optional


def test_compose_refuses_to_start_without_a_secret(raw: dict[str, Any], dotenv: dict[str, str]) -> None:
    for name in dotenv:
        with pytest.raises(MissingVariable, match=name):
            interpolate_tree(raw, {**dotenv, name: ""})


def test_each_service_is_built_from_the_dockerfile_and_runs_its_own_package(
    compose: dict[str, Any],
) -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG SERVICE$", dockerfile, re.MULTILINE)
    assert "COPY services/${SERVICE}/${SERVICE}/ " in dockerfile
    for name in OURS:
        service = compose["services"][name]
        build = service["build"]
        context = ROOT / build["context"]
        assert context.resolve() == ROOT
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert build["args"]["SERVICE"] == name
        assert service["command"] == ["python", "-m", name]
        assert (ROOT / "services" / name / name / "__main__.py").is_file()


def test_every_variable_given_to_a_service_is_one_of_its_settings(compose: dict[str, Any]) -> None:
    for name, (_, settings_class) in OURS.items():
        fields = {field.upper() for field in settings_class.model_fields}
        assert set(environment(compose, name)) <= fields, name


def test_every_required_setting_is_given(compose: dict[str, Any]) -> None:
    for name, (_, settings_class) in OURS.items():
        required = {
            field.upper() for field, info in settings_class.model_fields.items() if info.is_required()
        }
        assert required <= set(environment(compose, name)), name
    # Not required by its type, but identity refuses to start without a signing key.
    assert {"TOKEN_SIGNING_KEY", "TOKEN_SIGNING_KEY_FILE"} & set(environment(compose, "identity"))


def test_each_service_environment_is_valid_settings(compose: dict[str, Any]) -> None:
    for name in OURS:
        settings_of(compose, name)


def test_secrets_come_from_the_env_file_and_not_from_the_compose_file(raw: dict[str, Any]) -> None:
    for name, (_, settings_class) in OURS.items():
        env = raw["services"][name]["environment"]
        for key, value in env.items():
            field = settings_class.model_fields.get(key.lower())
            if field is not None and field.annotation in (SecretStr, SecretStr | None):
                assert "${" in str(value), f"{name}.{key} is written in docker-compose.yml"
        for url_key in ("DATABASE_URL", "AMQP_URL"):
            assert re.match(r"\w+://[^:/@]+:\$\{", str(env[url_key])), (
                f"{name}.{url_key} has a password in it"
            )


def test_published_ports_are_the_ports_the_services_listen_on(compose: dict[str, Any]) -> None:
    for name in OURS:
        port = settings_of(compose, name).http_port
        assert published(compose["services"][name]) == [(port, port)], name


def test_health_checks_ask_an_endpoint_that_the_service_serves_on_its_port(compose: dict[str, Any]) -> None:
    health = re.compile(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w./-]*)")
    for name in OURS:
        test = " ".join(compose["services"][name]["healthcheck"]["test"])
        match = health.search(test)
        assert match, f"{name}: no health check URL in {test!r}"
        assert int(match.group(1)) == settings_of(compose, name).http_port
        assert match.group(2) in {"/healthz", "/readyz"}
        assert ("GET", match.group(2)) in routes_of(compose, name)


def test_the_image_checks_its_liveness_on_an_endpoint_that_every_service_serves(
    compose: dict[str, Any],
) -> None:
    match = re.search(r"^HEALTHCHECK .*?:\{port\}(/\w+)'", DOCKERFILE.read_text(), re.MULTILINE | re.DOTALL)
    assert match
    for name in OURS:
        assert ("GET", match.group(1)) in routes_of(compose, name)


def test_services_start_after_what_they_need(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no health check"
    for name in OURS:
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == needs["rabbitmq"]["condition"] == "service_healthy"
        if name != "identity":
            # They verify access tokens with identity's published keys.
            assert needs["identity"]["condition"] == "service_healthy"
    # Media creates its buckets at start-up; it needs the store up, not a one-shot before it.
    assert services["media"]["depends_on"]["s3"]["condition"] == "service_healthy"


def test_services_are_pointed_at_servers_that_the_compose_file_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    identity_port = settings_of(compose, "identity").http_port
    identity_routes = routes_of(compose, "identity")
    for name in OURS:
        env = environment(compose, name)
        assert host_and_port(env["DATABASE_URL"]) == ("postgres", 5432)
        assert host_and_port(env["AMQP_URL"]) == ("rabbitmq", 5672)
        if name != "identity":
            jwks = urlsplit(env["JWKS_URL"])
            assert (jwks.hostname, jwks.port) == ("identity", identity_port)
            assert ("GET", jwks.path) in identity_routes
    media, notifier = environment(compose, "media"), environment(compose, "notifier")
    assert host_and_port(media["S3_ENDPOINT_URL"])[0] in services
    assert notifier["SMTP_HOST"] in services
    for target in ("postgres", "rabbitmq", "s3", "mailpit"):
        assert target in services


def test_postgres_creates_the_role_and_database_each_service_connects_with(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    mounts = [str(volume).split(":") for volume in postgres["volumes"]]
    assert any(
        (ROOT / source).resolve() == POSTGRES_INIT and target.startswith("/docker-entrypoint-initdb.d/")
        for source, target, *_ in mounts
    )
    script = POSTGRES_INIT.read_text()
    listed = re.search(r'^SERVICES="([^"]+)"$', script, re.MULTILINE)
    assert listed
    assert 'CREATE DATABASE :"name" OWNER :"name";' in script
    password_env = environment(compose, "postgres")
    for name in OURS:
        url = urlsplit(environment(compose, name)["DATABASE_URL"])
        assert url.scheme in {"postgres", "postgresql"}
        assert name in listed.group(1).split()
        assert url.username == url.path.lstrip("/") == name
        assert url.password == password_env[f"{name.upper()}_DB_PASSWORD"]


def test_services_log_in_to_the_broker_and_storage_with_their_credentials(compose: dict[str, Any]) -> None:
    broker = environment(compose, "rabbitmq")
    for name in OURS:
        url = urlsplit(environment(compose, name)["AMQP_URL"])
        assert (url.username, url.password) == (
            broker["RABBITMQ_DEFAULT_USER"],
            broker["RABBITMQ_DEFAULT_PASS"],
        )
    media, store = (environment(compose, name) for name in ("media", "s3"))
    assert (media["S3_ACCESS_KEY"], media["S3_SECRET_KEY"]) == (
        store["AWS_ACCESS_KEY_ID"],
        store["AWS_SECRET_ACCESS_KEY"],
    )


def test_photo_links_are_signed_for_the_port_that_s3_publishes(compose: dict[str, Any]) -> None:
    _, port = host_and_port(environment(compose, "media")["S3_PUBLIC_ENDPOINT_URL"])
    assert port in {host for host, _ in published(compose["services"]["s3"])}


def _dropped_from_image() -> set[str]:
    match = re.search(r'^ARG DEV_PACKAGES="([^"]+)"$', DOCKERFILE.read_text(), re.MULTILINE)
    assert match
    return {canonicalize_name(name) for name in match.group(1).split()}


def _locked() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(line.split("==")[0]) for line in lines if "==" in line}


def test_image_drops_only_packages_that_no_runtime_package_depends_on() -> None:
    dropped, locked = _dropped_from_image(), _locked()
    assert dropped <= locked
    for name in locked - dropped:
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert canonicalize_name(requirement.name) not in dropped, f"{name} needs {requirement.name}"


def test_service_code_imports_no_package_that_the_image_drops() -> None:
    dropped = _dropped_from_image()
    distributions = importlib.metadata.packages_distributions()
    runtime = [
        path
        for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").glob("*/*/**/*.py")]
        if not {"tests", "testing"} & set(path.relative_to(ROOT).parts)
    ]
    assert runtime
    for path in runtime:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                owners = {canonicalize_name(d) for d in distributions.get(module.split(".")[0], [])}
                assert not owners & dropped, f"{path.relative_to(ROOT)} imports {module}"


def test_the_offline_override_builds_stand_ins_for_services_of_the_compose_file(raw: dict[str, Any]) -> None:
    """deploy/offline/compose.yml (scripts/docker) swaps images and adds build args; it adds no service
    and leaves the operator's settings alone."""
    override = yaml.safe_load(OFFLINE_COMPOSE.read_text().replace("!reset ", ""))
    for name, service in override["services"].items():
        assert name in raw["services"], f"{name} is not in docker-compose.yml"
        assert "environment" not in service, f"{name}: settings belong in docker-compose.yml"
        build = service["build"]
        if name in OURS:
            assert set(build) == {"args"}
        else:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()

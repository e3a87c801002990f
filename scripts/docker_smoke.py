"""The operator's smoke check of a running Klaspost stack (scripts/docker-smoke runs it).

The README's walkthrough against the published ports, timed step by step: every service answers
/readyz with 200; the operator creates a school (X-Operator-Key), its admin adds a school year, a
group, a teacher and a child with a parent's address; the teacher sets her password from the welcome
mail, the parent redeems the access code from the invitation mail; the teacher posts a photo; the
parent reads the feed, downloads the photo's variant through its presigned S3 link (without its
metadata), and gets the post's mail, which the notifier's delivery report for operators counts. Mails
are read from the mail catcher's API: Mailpit's (/api/v1/messages) or maildev's (/api/email, /email
in maildev 2), whichever answers.

Usage: python scripts/docker_smoke.py OPERATOR_API_KEY [--host 127.0.0.1] [--mail-port 8025]
Exits 1 at the first step that fails, saying which and what it got.
"""

import argparse
import datetime
import json
import random
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from shared.testing.images import jpeg_with_gps, metadata_report

PORTS = {"identity": 8081, "posts": 8082, "media": 8083, "notifier": 8084}
PASSWORD = "correct horse battery staple"
WAIT_SECONDS = 60.0
T = TypeVar("T")


class SmokeFailed(Exception):
    pass


class Stack:
    def __init__(self, host: str, mail_port: int, operator_key: str) -> None:
        self.host = host
        self.mail = f"http://{host}:{mail_port}"
        self.operator_key = operator_key

    def url(self, service: str, path: str) -> str:
        return f"http://{self.host}:{PORTS[service]}{path}"

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        expect: int,
        token: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer of one request; SmokeFailed unless its status is `expect`."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = content_type
        status, answer = fetch(self.url(service, path), method=method, data=data, headers=sent)
        if status != expect:
            raise SmokeFailed(f"{method} {service}{path}: HTTP {status}, expected {expect}: {answer[:500]!r}")
        return json.loads(answer) if answer else None

    def mails(self) -> list[tuple[str, str, str]]:
        """(recipient, subject, text) of every caught mail, from Mailpit's API or maildev's."""
        status, answer = fetch(f"{self.mail}/api/v1/messages?limit=500")
        if status == 200:
            found = []
            for message in json.loads(answer)["messages"]:
                _, full = fetch(f"{self.mail}/api/v1/message/{message['ID']}")
                text = json.loads(full).get("Text", "")
                for to in message["To"]:
                    found.append((to["Address"].lower(), message["Subject"], text))
            return found
        for path in ("/api/email", "/email"):  # maildev 3, maildev 2
            status, answer = fetch(f"{self.mail}{path}")
            if status == 200:
                return [
                    (to["address"].lower(), message["subject"], message.get("text") or "")
                    for message in json.loads(answer)
                    for to in message["to"]
                ]
        raise SmokeFailed(f"no mail catcher API answers at {self.mail} (HTTP {status})")

    def mailed(self, address: str, pattern: str) -> str:
        """The first group of `pattern` in a mail to `address`, waiting up to WAIT_SECONDS."""
        value: str = wait_for(
            f"a mail to {address} matching {pattern!r}",
            lambda: next(
                (
                    match.group(1)
                    for to, _, text in self.mails()
                    if to == address.lower() and (match := re.search(pattern, text))
                ),
                None,
            ),
        )
        return value


def fetch(
    url: str, *, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    if not url.startswith(("http://", "https://")):
        raise SmokeFailed(f"not an HTTP URL: {url!r}")
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - checked above
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, str(error).encode()


def wait_for(what: str, probe: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise SmokeFailed(f"no {what} after {WAIT_SECONDS:.0f} s")
        time.sleep(0.5)


def current_school_year() -> str:
    today = datetime.date.today()
    start = today.year - (today.month < 8)
    return f"{start}-{start + 1}"


def run(stack: Stack) -> None:
    n = random.randrange(10**6)  # fresh addresses each run: an address holds one account
    admin_email, teacher_email = f"directie.{n}@lichtstraat.nl", f"juf.{n}@lichtstraat.nl"
    parent_email = f"ouder.{n}@voorbeeld.nl"
    year = current_school_year()
    started = time.monotonic()

    def step(name: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {name}", flush=True)

    for service in PORTS:
        status, answer = fetch(stack.url(service, "/readyz"))
        if status != 200:
            raise SmokeFailed(f"{service} /readyz: HTTP {status}: {answer[:300]!r}")
    step("all four services ready (/readyz 200)")

    school = stack.call(
        "POST",
        "identity",
        "/schools",
        expect=201,
        headers={"X-Operator-Key": stack.operator_key},
        body={
            "name": "OBS De Lichtstraat",
            "time_zone": "Europe/Amsterdam",
            "admin": {"email": admin_email, "display_name": "Directie", "password": PASSWORD},
        },
    )["school_id"]
    admin = stack.call(
        "POST", "identity", "/auth/login", expect=200, body={"email": admin_email, "password": PASSWORD}
    )["access_token"]
    stack.call(
        "POST", "identity", f"/schools/{school}/school-years", expect=201, token=admin, body={"name": year}
    )
    group = stack.call(
        "POST",
        "identity",
        f"/schools/{school}/groups",
        expect=201,
        token=admin,
        body={"name": "Groep 3B", "school_year": year},
    )["group_id"]
    step("operator created a school; its admin a school year and a group")

    teacher_id = stack.call(
        "POST",
        "identity",
        f"/schools/{school}/staff",
        expect=201,
        token=admin,
        body={"email": teacher_email, "display_name": "Juf Anne", "role": "teacher"},
    )["person_id"]
    stack.call("PUT", "identity", f"/groups/{group}/teachers/{teacher_id}", expect=200, token=admin)
    reset_token = stack.mailed(teacher_email, r"#token=([A-Za-z0-9_-]+)")
    teacher = stack.call(
        "POST", "identity", "/auth/password", expect=200, body={"token": reset_token, "password": PASSWORD}
    )["access_token"]
    step("teacher added, welcome mail caught, password set")

    stack.call("POST", "identity", f"/schools/{school}/invitations", expect=202, token=admin)
    stack.call(
        "POST",
        "identity",
        f"/schools/{school}/children",
        expect=201,
        token=admin,
        body={
            "given_name": "Sanne",
            "tussenvoegsel": "de",
            "family_name": "Vries",
            "group_id": group,
            "guardians": [{"email": parent_email, "display_name": "Sam de Vries"}],
        },
    )
    code = stack.mailed(parent_email, r"([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})")
    parent = stack.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        expect=201,
        body={"code": code, "display_name": "Sam de Vries", "password": PASSWORD},
    )["access_token"]
    step("child added, invitation mail caught, parent's access code redeemed")

    photo = stack.call(
        "POST",
        "media",
        f"/groups/{group}/photos",
        expect=201,
        token=teacher,
        data=jpeg_with_gps(1600, 1200),
        content_type="image/jpeg",
    )["photo_id"]
    post = stack.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        expect=201,
        token=teacher,
        body={"title": "Herfst", "body": "Vandaag hebben we de herfst getekend!", "photo_ids": [photo]},
    )
    step("teacher uploaded a photo and posted it")

    def in_feed() -> bool | None:
        feed = stack.call("GET", "posts", "/feed", expect=200, token=parent)
        return True if any(item.get("post_id") == post.get("post_id") for item in feed["posts"]) else None

    wait_for("post in the parent's feed", in_feed)

    def photo_ready() -> dict[str, Any] | None:
        status, answer = fetch(
            stack.url("media", f"/photos/{photo}"), headers={"Authorization": f"Bearer {parent}"}
        )
        found: dict[str, Any] = json.loads(answer) if status == 200 else {}
        if found.get("status") == "rejected":
            raise SmokeFailed(f"the photo was rejected: {found}")
        return found if found.get("status") == "ready" else None

    variant_url = wait_for("photo ready for the parent", photo_ready)["variants"][1]["url"]
    status, variant = fetch(variant_url)
    if status != 200:
        raise SmokeFailed(f"the photo's presigned link {variant_url}: HTTP {status}: {variant[:300]!r}")
    if any(metadata_report(variant)[kind] for kind in ("exif", "gps", "xmp")):
        raise SmokeFailed(f"the variant still holds metadata: {metadata_report(variant)}")
    step(f"parent sees the post and downloads the photo from S3 ({len(variant)} bytes, no metadata)")

    stack.mailed(parent_email, r"(herfst)")
    step("the post's mail reached the parent")

    def emailed() -> dict[str, Any] | None:
        report: dict[str, Any] = stack.call(
            "GET",
            "notifier",
            f"/reports/posts/{post['post_id']}",
            expect=200,
            headers={"X-Operator-Key": stack.operator_key},
        )
        return report if report["delivered"]["email"] >= 1 else None

    report = wait_for("email counted in the operator's delivery report", emailed)
    step(f"operator's delivery report: {report['delivered']} delivered, {report['failed']} failed")
    subjects = sorted(
        subject
        for to, subject, _ in stack.mails()
        if to.endswith(f".{n}@lichtstraat.nl") or to == parent_email
    )
    for subject in subjects:
        print(f"          mail: {subject}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operator_key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mail-port", type=int, default=8025)
    args = parser.parse_args()
    try:
        run(Stack(args.host, args.mail_port, args.operator_key))
    except SmokeFailed as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        return 1
    print("smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

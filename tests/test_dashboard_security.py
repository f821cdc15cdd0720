"""The dashboard's security findings of issue 15, each pinned: the client address behind
proxies, sessions that signing out ends everywhere, body limits for any transfer encoding, CSRF
without sign-in, trailing-slash redirects, a password where its hash belongs, JSON nested too
deep. Over real HTTP against `jobkit dashboard` where the finding was about the server."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_data
from workers import subprocess_env

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

import anyio
from starlette.testclient import TestClient
from test_dashboard import ADMIN, HASHES, dashboard_config, sign_in
from test_dashboard_browser import dashboard as real_dashboard

from jobkit import JobKit, JobStatus
from jobkit.config import Config, load_config
from jobkit.dashboard.passwords import hash_password
from jobkit.dashboard.proxies import TrustedProxies, throttle_key
from jobkit.dashboard.web import create_app
from jobkit.exceptions import ConfigError

#: The same key for every dashboard of a test: a cookie of one is good on the other.
SECRET_KEY = "k" * 40


@contextmanager
def served(tmp_path: Path, name: str = "jobs.yaml", **dashboard: Any) -> Iterator[str]:
    """``jobkit dashboard`` as a real uvicorn server over the SQLite store of ``tmp_path``:
    its base URL, until the block ends."""
    config = tmp_path / name
    config.write_text(yaml.safe_dump(config_data(tmp_path, dashboard={
        "password_hash": HASHES[ADMIN], "secret_key": SECRET_KEY, **dashboard})))
    with real_dashboard(config) as base:
        yield base


def call(url: str, headers: dict[str, str] | None = None, data: bytes | None = None
         ) -> tuple[int, dict[str, str], str]:
    """One request over real HTTP, redirects not followed: status, headers and body."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def bearer(password: str, forwarded_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {password}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


class TestClientAddress:
    """Whose failed sign-ins count: the peer's, unless a trusted proxy forwarded the request."""

    def test_x_forwarded_for_does_not_escape_the_lockout(self, tmp_path: Path) -> None:
        """Without trusted proxies, a different X-Forwarded-For on each try is the same client:
        the eleventh try is locked out, even with the right password."""
        with served(tmp_path) as base:
            for n in range(10):
                status, _, _ = call(f"{base}/api/jobs", bearer("wrong", f"198.51.100.{n}"))
                assert status == 401
            status, _, _ = call(f"{base}/api/jobs", bearer(ADMIN, "198.51.100.77"))
            assert status == 401  # locked out for the minute

    def test_behind_a_trusted_proxy_the_forwarded_client_counts(self, tmp_path: Path) -> None:
        """With the peer trusted, the rightmost address it did not add itself is the client:
        a forged address on the left changes nothing, another client is not locked out."""
        with served(tmp_path, trusted_proxies=["127.0.0.1"]) as base:
            for n in range(10):
                forged = f"10.9.9.{n}, 203.0.113.7"  # the proxy appended the real one
                status, _, _ = call(f"{base}/api/jobs", bearer("wrong", forged))
                assert status == 401
            assert call(f"{base}/api/jobs", bearer(ADMIN, "203.0.113.7"))[0] == 401
            assert call(f"{base}/api/jobs", bearer(ADMIN, "203.0.113.8"))[0] == 200
            assert call(f"{base}/api/jobs", bearer(ADMIN))[0] == 200  # the proxy itself

    @pytest.mark.parametrize(("peer", "forwarded", "client"), [
        ("127.0.0.1", "203.0.113.7", "127.0.0.1"),  # nothing trusted (below: 10.0.0.0/8)
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "1.2.3.4, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # a chain of trusted proxies
        ("10.0.0.5", "10.1.1.1, 10.1.2.3", "10.1.1.1"),  # every hop trusted: the first
        ("10.0.0.5", "nonsense, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "203.0.113.7, not-an-address", "not-an-address"),
        ("10.0.0.5", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.0.0.5", "203.0.113.7:4711", "203.0.113.7"),
        ("fd00::1", "2001:db8::2", "2001:db8::2"),
    ])
    def test_the_rightmost_untrusted_address(self, peer: str, forwarded: str,
                                             client: str) -> None:
        """X-Forwarded-For read from the right, skipping trusted proxies (networks too)."""
        proxies = TrustedProxies.of([] if peer == "127.0.0.1" else ["10.0.0.0/8", "fd00::/8"])
        assert proxies.client(peer, [forwarded] if forwarded else []) == client

    def test_ipv6_clients_count_by_their_64_network(self) -> None:
        """One lockout for a whole /64 (one machine's usual share); IPv4 as it is, mapped or
        not; a peer given as an IPv4-mapped IPv6 address is trusted as its IPv4 self."""
        assert throttle_key("2001:db8:1:2::5") == throttle_key("2001:db8:1:2:ffff::9")
        assert throttle_key("2001:db8:1:2::5") != throttle_key("2001:db8:1:3::5")
        assert throttle_key("::ffff:192.0.2.1") == throttle_key("192.0.2.1") == "192.0.2.1"
        assert TrustedProxies.of(["10.0.0.0/8"]).client("::ffff:10.0.0.5", ["203.0.113.7"]) \
            == "203.0.113.7"

    def test_several_headers_are_one_list(self) -> None:
        """Two X-Forwarded-For headers read as one list, in order."""
        proxies = TrustedProxies.of(["10.0.0.5"])
        assert proxies.client("10.0.0.5", ["1.1.1.1", "2.2.2.2, 10.0.0.5"]) == "2.2.2.2"

    def test_trusted_proxies_are_checked_with_the_config(self, tmp_path: Path) -> None:
        """A value that is no address or network is a ConfigError naming it."""
        with pytest.raises(ConfigError, match=r"dashboard\.trusted_proxies\[1\]: expected an IP "
                                              r"address or network"):
            Config.from_dict(config_data(tmp_path, dashboard={
                "trusted_proxies": ["10.0.0.1", "proxy.example"]}))
        with pytest.raises(ConfigError, match=r"dashboard\.trusted_proxies: expected a list"):
            Config.from_dict(config_data(tmp_path, dashboard={"trusted_proxies": "10.0.0.1"}))
        env = load_config(None, environ={
            "JOBKIT_DASHBOARD__TRUSTED_PROXIES": "[10.0.0.1, 'fd00::/8']"})
        assert env.dashboard.trusted_proxies == ["10.0.0.1", "fd00::/8"]


def copied(client: TestClient, app: Any) -> TestClient:
    """Another client with the same cookies: a copied session."""
    other = TestClient(app, base_url="http://127.0.0.1")
    other.cookies.update(client.cookies)
    return other


class TestSessionsEnd:
    """Signing out, or a new password, ends a session on the server, not only in the browser."""

    def test_a_copied_cookie_is_refused_after_sign_out(self, tmp_path: Path) -> None:
        """The cookie copied before signing out neither reads the API nor retries a job."""
        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app:
            job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
            app.cancel_job(job_id)
            asgi = create_app(app)
            with TestClient(asgi, base_url="http://127.0.0.1") as browser:
                csrf = sign_in(browser)
                thief = copied(browser, asgi)
                assert thief.get("/api/jobs").status_code == 200
                browser.post("/logout", data={"csrf": csrf}, follow_redirects=False)
                assert thief.get("/api/jobs").status_code == 401
                assert thief.get("/", follow_redirects=False).status_code == 303
                retried = thief.post(f"/api/jobs/{job_id}/retry",
                                     headers={"X-CSRF-Token": csrf})
                assert retried.status_code == 401
                assert app.get_job(job_id).status is JobStatus.CANCELLED

    def test_sign_out_on_one_dashboard_ends_the_session_on_another(
        self, tmp_path: Path
    ) -> None:
        """Two dashboard processes over one store (behind one proxy): a sign-out on one is
        seen by the other at once."""
        with served(tmp_path, "a.yaml") as first, served(tmp_path, "b.yaml") as second:
            status, headers, page = call(f"{first}/login")
            cookie = headers["set-cookie"].split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            form = f"csrf={csrf.group(1)}&password={ADMIN}".encode()
            status, headers, _ = call(f"{first}/login", {"Cookie": cookie}, form)
            assert status == 303
            cookie = headers["set-cookie"].split(";")[0]
            assert call(f"{second}/api/jobs", {"Cookie": cookie})[0] == 200
            _, _, page = call(f"{first}/", {"Cookie": cookie})
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token
            status, _, _ = call(f"{first}/logout", {"Cookie": cookie},
                                f"csrf={token.group(1)}".encode())
            assert status == 303
            assert call(f"{first}/api/jobs", {"Cookie": cookie})[0] == 401
            assert call(f"{second}/api/jobs", {"Cookie": cookie})[0] == 401

    def test_a_sign_out_the_store_cannot_record_says_so(self, tmp_path: Path) -> None:
        """A store that refuses the write (a SQLite trigger here): 503 naming the problem, and
        the session is not pretended ended."""
        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app:
            asgi = create_app(app)
            with TestClient(asgi, base_url="http://127.0.0.1") as browser:
                csrf = sign_in(browser)
                thief = copied(browser, asgi)
                with sqlite3.connect(tmp_path / "jobkit.db") as conn:
                    conn.execute("CREATE TRIGGER no_revocations BEFORE INSERT ON "
                                 "jobkit_revoked_sessions BEGIN SELECT RAISE(ABORT, "
                                 "'the disk says no'); END")
                response = browser.post("/logout", data={"csrf": csrf},
                                        follow_redirects=False)
                assert response.status_code == 503
                assert "signed out in this browser only" in response.text
                assert "the disk says no" in response.text
                assert thief.get("/api/jobs").status_code == 200  # as the answer said

    def test_a_new_password_hash_ends_every_session(self, tmp_path: Path) -> None:
        """A session signed in under the old hash is refused once the config holds a new one
        (even a new hash of the same password); a fresh sign-in works."""
        before = dashboard_config(tmp_path, secret_key=SECRET_KEY)
        with JobKit(before, load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as browser:
            sign_in(browser)
            cookies = dict(browser.cookies)
        changed = dashboard_config(tmp_path, secret_key=SECRET_KEY,
                                   password_hash=hash_password(ADMIN))
        with JobKit(changed, load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as later:
            later.cookies.update(cookies)
            assert later.get("/api/jobs").status_code == 401
            sign_in(later)
            assert later.get("/api/jobs").status_code == 200


class TestBodies:
    """No POST reads more than 256 KB, however its body is sent."""

    def test_a_chunked_body_is_cut_off_at_the_limit(self, tmp_path: Path) -> None:
        """An admin's API POST sent in chunks without a Content-Length: 413 after the first
        256 KB, the rest never read."""
        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app:
            asgi = create_app(app)
            sent = 0
            chunk = b" " * 65536

            async def receive() -> dict[str, Any]:
                nonlocal sent
                sent += len(chunk)
                return {"type": "http.request", "body": chunk, "more_body": sent < 52 << 20}

            answers: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                answers.append(message)

            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "POST", "scheme": "http", "path": "/api/jobs/bulk", "raw_path":
                b"/api/jobs/bulk", "query_string": b"", "root_path": "",
                "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                "headers": [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked"),
                            (b"content-type", b"application/json"),
                            (b"authorization", f"Bearer {ADMIN}".encode())],
            }
            anyio.run(asgi, scope, receive, send)
            assert answers[0]["status"] == 413
            assert sent <= 256 * 1024 + len(chunk)

    def test_a_chunked_body_over_http_is_refused(self, tmp_path: Path) -> None:
        """The same through a real server (4 MB in chunks): 413."""
        with served(tmp_path) as base:
            port = int(base.rsplit(":", 1)[1])
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = (b"[" + b"0," * 100_000 for _ in range(20))  # 4 MB, in chunks
            # the server may answer and close before the last chunk
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request("POST", "/api/jobs/bulk", body=body, encode_chunked=True,
                                   headers={"Authorization": f"Bearer {ADMIN}",
                                            "Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 413
            connection.close()

    def test_a_chunked_sign_in_form_is_cut_off_too(self, client: TestClient) -> None:
        """The sign-in form, sent in chunks: 413."""
        form = (b"password=" + b"x" * 65536 for _ in range(5))
        response = client.post("/login", content=form, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413

    def test_an_api_post_without_content_length_must_be_json(self, tmp_path: Path) -> None:
        """A chunked text/plain body is refused as any other non-JSON body is (415)."""
        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            csrf = sign_in(client)
            job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
            response = client.post(f"/api/jobs/{job_id}/cancel",
                                   content=iter([b'{"x":', b" 1}"]),
                                   headers={"X-CSRF-Token": csrf, "Content-Type": "text/plain"})
            assert response.status_code == 415
            assert app.get_job(job_id).status is JobStatus.PENDING


class TestWithoutSignIn:
    """``auth: false``: the CSRF token is still needed, whatever else a request carries."""

    def test_a_bearer_header_does_not_skip_the_csrf_check(self, tmp_path: Path) -> None:
        """Without sign-in there are no tokens: an Authorization header is no credential."""
        with JobKit(dashboard_config(tmp_path, auth=False), load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
            for path in (f"/api/jobs/{job_id}/cancel", f"/jobs/{job_id}/cancel"):
                forged = client.post(path, headers={"Authorization": "Bearer anything"},
                                     follow_redirects=False)
                assert forged.status_code == 403, path
            assert app.get_job(job_id).status is JobStatus.PENDING


class TestRedirects:
    """No answer sends a browser to the host a request claims to be for."""

    @pytest.mark.parametrize("path", ["/api/jobs/", "/jobs/", "/registry/", "/login/"])
    def test_no_redirect_to_a_foreign_host(self, client: TestClient, path: str) -> None:
        """A trailing slash is not found (404), never redirected to the Host named."""
        sign_in(client)
        response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert "evil.example" not in response.headers.get("location", "")
        assert response.status_code in (303, 404)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app, \
            TestClient(create_app(app), base_url="http://127.0.0.1") as test_client:
        yield test_client


class TestPasswordInTheConfig:
    """A password where its hash belongs is refused without being shown."""

    def test_a_plain_password_in_the_environment_is_not_echoed(self, tmp_path: Path) -> None:
        """The error names the variable and the command that makes a hash, not the value."""
        with pytest.raises(ConfigError) as refused:
            load_config(None, environ={"JOBKIT_DASHBOARD__PASSWORD_HASH": "hunter2"})
        message = str(refused.value)
        assert "hunter2" not in message
        assert "JOBKIT_DASHBOARD__PASSWORD_HASH" in message
        assert "jobkit dashboard hash-password" in message

    def test_nor_in_the_file_nor_a_short_secret_key(self, tmp_path: Path) -> None:
        """``jobs.yaml`` likewise, for both hashes and the secret key."""
        with pytest.raises(ConfigError) as refused:
            Config.from_dict(config_data(tmp_path, dashboard={
                "password_hash": "hunter2", "readonly_password_hash": "letmein",
                "secret_key": "tooshort"}))
        message = str(refused.value)
        for secret in ("hunter2", "letmein", "tooshort"):
            assert secret not in message
        assert "dashboard.readonly_password_hash" in message
        assert "dashboard.secret_key" in message

    def test_the_cli_says_so_in_one_line(self, tmp_path: Path) -> None:
        """``jobkit dashboard`` exits 2 with one line that does not hold the password."""
        config = tmp_path / "jobs.yaml"
        config.write_text(yaml.safe_dump(config_data(tmp_path)))
        done = subprocess.run(
            [sys.executable, "-m", "jobkit", "--config", str(config), "dashboard"],
            env={**subprocess_env(), "JOBKIT_DASHBOARD__PASSWORD_HASH": "hunter2"},
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
        assert "hash-password" in done.stderr


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


class TestDeepJson:
    """JSON nested past any use is a 400 that says so, never a 500."""

    def test_retry_with_edit_of_60000_levels(self, tmp_path: Path) -> None:
        """Through the API and through the form: 400 naming the depth limit; nothing runs."""
        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app, \
                TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            job_id = app.run_background_job("Recorder", "record", {"ledger": "x", "tag": "t"})
            app.cancel_job(job_id)
            csrf = sign_in(client)
            body = '{"params": {"tag": ' + nested(60_000) + "}}"
            response = client.post(f"/api/jobs/{job_id}/retry-edited", content=body,
                                   headers={"X-CSRF-Token": csrf,
                                            "Content-Type": "application/json"})
            assert response.status_code == 400, response.text
            assert "nests deeper than" in response.json()["error"]
            for levels in (40_000, 500):  # 40,000: 240 KB, form-encoded
                form = client.post(f"/jobs/{job_id}/retry-edited",
                                   data={"csrf": csrf, "param.ledger": '"x"',
                                         "param.tag": nested(levels)})
                assert form.status_code == 400, levels
                assert "nests deeper than" in form.text
            shallow = client.post(f"/api/jobs/{job_id}/retry-edited",
                                  json={"params": {"ledger": "x", "tag": json.loads(nested(70))}},
                                  headers={"X-CSRF-Token": csrf})
            assert shallow.status_code == 400
            assert "nests deeper than 64 levels" in shallow.json()["errors"]["tag"]
            assert app.storage.count(status=JobStatus.PENDING) == 0

    def test_any_api_post_with_a_deep_body(self, client: TestClient) -> None:
        """The bulk route too: 400, the reason in words."""
        csrf = sign_in(client)
        response = client.post("/api/jobs/bulk", content=nested(60_000),
                               headers={"X-CSRF-Token": csrf,
                                        "Content-Type": "application/json"})
        assert response.status_code == 400
        assert "nests deeper than" in response.json()["error"]


class TestSignOutsKept:
    """`jobkit dashboard` says when its store cannot share sign-outs between processes."""

    def test_a_backend_without_revocations_is_named_at_start(self, tmp_path: Path) -> None:
        """The built-in stores keep them; a backend that does not is warned about."""
        from jobkit.dashboard.serve import keeps_sign_outs
        from jobkit.storage import MemoryStorage

        with JobKit(dashboard_config(tmp_path), load_entrypoints=False) as app:
            assert keeps_sign_outs(app)

        from jobkit.testing.coreonly import CoreOnlyStorage

        config = Config.from_dict({**config_data(tmp_path), "storage": "memory://"})
        with JobKit(config, storage=CoreOnlyStorage(MemoryStorage()),
                    load_entrypoints=False) as app:
            assert not keeps_sign_outs(app)

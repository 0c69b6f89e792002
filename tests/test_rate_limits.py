"""Rate limits, end to end on both backends, with two `crmgate serve` replicas sharing one
database: brute-force lockouts per account and per client address (voyzu sign-in, wrong
keys on C2C, Close and gRPC), request budgets per key and session (per tenant), the exact
429s of every surface, and the unmodified `closeio` client riding through a throttle.

Requests alternate between the replicas, so every limit is shown to hold across them.
Clients are told apart by X-Forwarded-For (the replicas trust the loopback proxy), so each
test has addresses of its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from c2c.v1 import contact_assets_pb2, contact_assets_pb2_grpc
from closeio_api import Client
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.processes import CrmgateProcess, run_admin

ACCOUNT_FAILURES = 3
ADDRESS_FAILURES = 6
RATE_WINDOW = 4
BUDGET = 5
PASSWORD = "correct horse battery staple"
ENV = {
    "CRMGATE_AUTH_ACCOUNT_FAILURES": str(ACCOUNT_FAILURES),
    "CRMGATE_AUTH_ADDRESS_FAILURES": str(ADDRESS_FAILURES),
    "CRMGATE_AUTH_FAILURE_WINDOW": "3600",
    "CRMGATE_RATE_WINDOW": str(RATE_WINDOW),
    "CRMGATE_TRUSTED_PROXIES": "127.0.0.1",
    # Direct gRPC callers on loopback are not gateways here: their say-so about the
    # client's address must not count.
    "CRMGATE_TRUSTED_GATEWAYS": "192.0.2.0/24",
    "CRMGATE_LOG_LEVEL": "WARNING",
}
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


class Replicas:
    """Two `crmgate serve` on one database, and what the tests set up in it."""

    def __init__(self, a: CrmgateProcess, b: CrmgateProcess, env: dict[str, str]) -> None:
        self.a, self.b, self.env = a, b, env
        self._turn = itertools.cycle([a, b])

    def next_url(self) -> str:
        return next(self._turn).http_url

    def admin(self, *args: str) -> str:
        return run_admin(self.a.data_dir, *args, env=self.env).strip()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    data_dir = tmp_path_factory.mktemp("limits")
    env = dict(ENV)
    name = None
    if request.param == "sqlite":
        env["CRMGATE_DATABASE_URL"] = f"sqlite:///{data_dir}/crmgate.sqlite3"
    else:
        admin = request.getfixturevalue("postgres_admin")
        name = create_postgres_database(admin)
        env["CRMGATE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with (
            CrmgateProcess.start(data_dir, env=env) as a,
            CrmgateProcess.start(data_dir, env=env) as b,
        ):
            replicas = Replicas(a, b, env)
            replicas.admin("tenant", "create", "quiet")
            replicas.admin("tenant", "create", "noisy", "--request-limit", str(BUDGET))
            for tenant in ("quiet", "noisy"):
                replicas.admin(
                    "user", "create", "--tenant", tenant, "--email", f"{tenant}@example.com",
                    "--password", PASSWORD,
                )  # fmt: skip
            yield replicas
    finally:
        if name is not None:
            drop_postgres_database(request.getfixturevalue("postgres_admin"), name)


def send(
    replicas: Replicas, method: str, path: str, address: str, **options: Any
) -> requests.Response:
    headers = {"X-Forwarded-For": address, **options.pop("headers", {})}
    return requests.request(
        method, replicas.next_url() + path, headers=headers, timeout=30, **options
    )


def sign_in(replicas: Replicas, email: str, password: str, address: str) -> requests.Response:
    return send(replicas, "POST", "/api/auth", address, json={"Email": email, "Password": password})


def retry_after(response: requests.Response) -> int:
    seconds = int(response.headers["Retry-After"])
    assert seconds >= 1
    return seconds


def test_sign_in_locks_the_account_not_others(replicas: Replicas) -> None:
    for _ in range(ACCOUNT_FAILURES):  # each from an address of its own
        answer = sign_in(replicas, "quiet@example.com", "wrong", next(_addresses))
        assert (answer.status_code, answer.json()) == (
            401,
            {"ErrorMessage": "Invalid email or password."},
        )
    for password in ("wrong", PASSWORD):  # locked: even the right password is refused
        answer = sign_in(replicas, "QUIET@example.com", password, next(_addresses))
        seconds = retry_after(answer)
        assert 3500 < seconds <= 3600  # the rest of the failure window
        assert answer.status_code == 429
        assert answer.json() == {
            "ErrorMessage": f"Too many requests; try again in {seconds} seconds."
        }
        assert answer.headers["RateLimit"] == (
            f"limit={ACCOUNT_FAILURES}, remaining=0, reset={seconds}"
        )
    answer = sign_in(replicas, "noisy@example.com", PASSWORD, next(_addresses))
    assert answer.status_code == 200, answer.text


def test_a_success_clears_the_account_count(replicas: Replicas) -> None:
    """NIST counts consecutive failures: a success in between starts the count over."""
    replicas.admin(
        "user", "create", "--tenant", "quiet", "--email", "steady@example.com",
        "--password", PASSWORD,
    )  # fmt: skip
    for _ in range(2):
        for _ in range(ACCOUNT_FAILURES - 1):
            answer = sign_in(replicas, "steady@example.com", "wrong", next(_addresses))
            assert answer.status_code == 401
        answer = sign_in(replicas, "steady@example.com", PASSWORD, next(_addresses))
        assert answer.status_code == 200, answer.text


def test_sign_in_locks_the_address_not_others(replicas: Replicas) -> None:
    attacker = next(_addresses)
    for n in range(ADDRESS_FAILURES):  # one guess at each of many accounts
        answer = sign_in(replicas, f"nobody{n}@example.com", "wrong", attacker)
        assert answer.status_code == 401
    answer = sign_in(replicas, "noisy@example.com", PASSWORD, attacker)
    assert answer.status_code == 429
    assert answer.json() == {
        "ErrorMessage": f"Too many requests; try again in {retry_after(answer)} seconds."
    }
    assert sign_in(replicas, "noisy@example.com", PASSWORD, next(_addresses)).status_code == 200


def test_wrong_c2c_keys_lock_the_address(replicas: Replicas) -> None:
    key = replicas.admin("apikey", "create", "--tenant", "quiet", "--kind", "c2c")
    attacker = next(_addresses)
    headers = {"X-Api-Version": "v1"}
    for n in range(ADDRESS_FAILURES):
        answer = send(
            replicas, "GET", "/api/c2c/health", attacker,
            headers={**headers, "Authorization": f"Bearer c2c_guess{n}"},
        )  # fmt: skip
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_api_key")
    for language, text in (
        ("en", "Too many requests; try again in {} seconds."),
        ("es", "Demasiadas solicitudes; vuelva a intentarlo en {} segundos."),
    ):
        answer = send(
            replicas, "GET", "/api/c2c/health", attacker,
            headers={**headers, "Authorization": f"Bearer {key}", "Accept-Language": language},
        )  # fmt: skip
        seconds = retry_after(answer)
        assert answer.status_code == 429
        assert answer.json() == {"error": "too_many_requests", "message": text.format(seconds)}
    answer = send(
        replicas, "GET", "/api/c2c/health", next(_addresses),
        headers={**headers, "Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert (answer.status_code, answer.json()) == (200, {"data": {"status": "ok"}})


def test_wrong_close_keys_lock_the_address(replicas: Replicas) -> None:
    key = replicas.admin("apikey", "create", "--tenant", "quiet", "--kind", "close")
    attacker = next(_addresses)
    form = {"filename": "a.txt", "content_type": "text/plain"}
    for n in range(ADDRESS_FAILURES):
        answer = send(
            replicas, "POST", "/api/v1/files/upload/", attacker, json=form, auth=(f"api_{n}", "")
        )
        assert answer.status_code == 401
    answer = send(replicas, "POST", "/api/v1/files/upload/", attacker, json=form, auth=(key, ""))
    seconds = retry_after(answer)
    assert answer.status_code == 429
    assert answer.json() == {"error": f"Too many requests; try again in {seconds} seconds."}
    assert answer.headers["RateLimit"] == f"limit={ADDRESS_FAILURES}, remaining=0, reset={seconds}"
    answer = send(
        replicas, "POST", "/api/v1/files/upload/", next(_addresses), json=form, auth=(key, "")
    )
    assert answer.status_code == 200, answer.text


def _in_one_window(run: Any) -> Any:
    """Run `run()` so that it ends within the rate windows its first calls opened: a
    budget's window starts at its key's first call (a whole second, so up to one before
    it) and lasts RATE_WINDOW seconds. A run slower than that (a loaded machine) saw a
    window end midway, so it runs again once every window it opened has ended."""
    for _ in range(5):
        started = time.monotonic()
        outcome = run()
        if time.monotonic() - started < RATE_WINDOW - 1:
            return outcome
        time.sleep(RATE_WINDOW)  # the windows the slow run opened end meanwhile
    raise AssertionError("never ran within one rate window")


def test_budgets_per_key_and_session_hold_across_replicas(replicas: Replicas) -> None:
    """A tenant's keys and sessions each get its budget, counted over both replicas; the
    quiet tenant's calls go on meanwhile."""
    noisy_c2c = replicas.admin("apikey", "create", "--tenant", "noisy", "--kind", "c2c")
    noisy_close = replicas.admin("apikey", "create", "--tenant", "noisy", "--kind", "close")
    quiet_c2c = replicas.admin("apikey", "create", "--tenant", "quiet", "--kind", "c2c")
    client = next(_addresses)
    session = sign_in(replicas, "noisy@example.com", PASSWORD, client).cookies["voyzu_session_id"]
    c2c = {"X-Api-Version": "v1"}
    calls = {
        "c2c": lambda: send(
            replicas, "GET", "/api/c2c/health", client,
            headers={**c2c, "Authorization": f"Bearer {noisy_c2c}"},
        ),
        "close": lambda: send(
            replicas, "POST", "/api/v1/files/upload/", client,
            json={"filename": "a.txt", "content_type": "text/plain"}, auth=(noisy_close, ""),
        ),
        "voyzu": lambda: send(
            replicas, "POST", "/api/users/list", client,
            cookies={"voyzu_session_id": session},
        ),
    }  # fmt: skip

    def burst() -> dict[str, list[requests.Response]]:
        answers = {name: [call() for _ in range(BUDGET + 1)] for name, call in calls.items()}
        quiet = send(
            replicas, "GET", "/api/c2c/health", client,
            headers={**c2c, "Authorization": f"Bearer {quiet_c2c}"},
        )  # fmt: skip
        assert (quiet.status_code, quiet.json()) == (200, {"data": {"status": "ok"}})
        return answers

    answers = _in_one_window(burst)
    for name, responses in answers.items():
        assert [r.status_code for r in responses[:BUDGET]] == [200] * BUDGET, name
        throttled = responses[BUDGET]
        seconds = retry_after(throttled)
        assert seconds <= RATE_WINDOW
        assert throttled.status_code == 429, name
        assert throttled.headers["RateLimit"] == f"limit={BUDGET}, remaining=0, reset={seconds}"
        message = f"Too many requests; try again in {seconds} seconds."
        assert (
            throttled.json()
            == {
                "c2c": {"error": "too_many_requests", "message": message},
                "close": {"error": message},
                "voyzu": {"ErrorMessage": message},
            }[name]
        )


def test_the_closeio_client_rides_through_a_throttle(replicas: Replicas) -> None:
    """The unmodified client sleeps for RateLimit's reset on a 429 and tries again."""
    key = replicas.admin("apikey", "create", "--tenant", "noisy", "--kind", "close")
    api = Client(key)
    api.session.headers["X-Forwarded-For"] = next(_addresses)  # a client of its own
    statuses: list[int] = []
    api.session.hooks["response"].append(
        lambda response, **_: statuses.append(response.status_code)
    )
    forms = []
    for n in range(2 * BUDGET + 2):
        api.base_url = replicas.next_url() + "/api/v1/"
        forms.append(
            api.post("files/upload", {"filename": f"{n}.txt", "content_type": "text/plain"})
        )
    assert len(forms) == 2 * BUDGET + 2 and all("upload" in form for form in forms)
    assert 429 in statuses  # it was throttled, and rode through
    assert set(statuses) == {200, 429}


def _grpc_health(target: str, key: str, spoofed: str) -> grpc.RpcError | None:
    with grpc.insecure_channel(target) as channel:
        stub = contact_assets_pb2_grpc.ContactAssetsStub(channel)
        try:
            stub.Health(
                contact_assets_pb2.HealthRequest(),
                metadata=[
                    ("authorization", f"Bearer {key}"),
                    ("x-crmgate-client-address", spoofed),
                ],
                timeout=30,
            )
        except grpc.RpcError as error:
            return error
    return None


def test_wrong_grpc_keys_lock_the_peer_whatever_it_claims(replicas: Replicas) -> None:
    """Direct gRPC callers are counted by their own address: the client-address metadata
    counts from trusted gateways only. (Last in the module: it locks out 127.0.0.1 itself,
    which the HTTP tests never are, having X-Forwarded-For.)"""
    key = replicas.admin("apikey", "create", "--tenant", "quiet", "--kind", "c2c")
    targets = itertools.cycle([replicas.a.grpc_target, replicas.b.grpc_target])
    for n in range(ADDRESS_FAILURES):
        error = _grpc_health(next(targets), f"c2c_guess{n}", next(_addresses))
        assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = _grpc_health(next(targets), key, next(_addresses))
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    seconds = retry.retry_delay.seconds
    assert 3500 < seconds <= 3600
    assert (info.reason, dict(info.metadata)) == (
        "rate_limited",
        {"limit": str(ADDRESS_FAILURES), "remaining": "0", "reset": str(seconds)},
    )
    assert status.message == f"Too many requests; try again in {seconds} seconds."
    # The same key through a gateway, for another client, still works.
    answer = send(
        replicas, "GET", "/api/c2c/health", next(_addresses),
        headers={"X-Api-Version": "v1", "Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert answer.status_code == 200

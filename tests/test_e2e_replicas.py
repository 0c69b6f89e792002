"""Several `crmgate server` processes behind one `crmgate gateway`: calls are balanced over
all of them, and when one dies the others answer (idempotent calls are retried there)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from gateway.channel import channel_target, retried_methods, service_config
from gateway.contract import FILE_DESCRIPTORS
from tests.support.processes import launched, run_admin, wait_until_answering


def test_targets_become_one_balanced_address_list() -> None:
    assert channel_target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target("localhost:5") in ("ipv4:127.0.0.1:5", "ipv6:[::1]:5")
    assert channel_target("[::1]:7") == "ipv6:[::1]:7"
    assert channel_target("dns:///crmgate-server:50051") == "dns:///crmgate-server:50051"
    with pytest.raises(ValueError):
        channel_target("127.0.0.1:1,[::1]:2")
    with pytest.raises(ValueError):
        channel_target("no-port")


def test_only_idempotent_methods_are_retried() -> None:
    retried = {f"{m.containing_service.name}.{m.name}" for m in retried_methods(FILE_DESCRIPTORS)}
    assert {"ContactAssets.Health", "Crm.SearchContacts", "Crm.UpdateContact"} <= retried
    assert retried.isdisjoint(
        {
            "ContactAssets.AttachAssets",
            "Crm.CreateContact",
            "Crm.CreateImport",
            "Files.CreateUpload",
        }
    )
    assert '"round_robin"' in service_config(FILE_DESCRIPTORS)


def test_calls_spread_over_servers_and_survive_one_dying(tmp_path: Path) -> None:
    run_admin(tmp_path, "tenant", "create", "acme")
    key = run_admin(tmp_path, "apikey", "create", "--tenant", "acme", "--kind", "c2c")
    headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"}
    server = ("server", "--grpc-port", "0", "--data-dir", str(tmp_path))
    with (
        launched(*server, expect=frozenset({"grpc"})) as first,
        launched(*server, expect=frozenset({"grpc"})) as second,
    ):
        target = f"{first.addresses['grpc']},{second.addresses['grpc']}"
        gateway_args = ("gateway", "--grpc-target", target, "--http-port", "0")
        with launched(*gateway_args, expect=frozenset({"http"})) as gateway:
            url = gateway.addresses["http"] + "/api/c2c/health"
            wait_until_answering(gateway.addresses["http"])
            for _ in range(20):
                assert requests.get(url, headers=headers, timeout=10).status_code == 200

            def calls_logged(process: object) -> int:
                return sum(
                    '"method": "/c2c.v1.ContactAssets/Health"' in line for line in process.output
                )  # type: ignore[attr-defined]

            deadline = time.monotonic() + 5  # lines are written by a thread, in batches
            while not (calls_logged(first) >= 5 and calls_logged(second) >= 5):  # balanced
                assert time.monotonic() < deadline, (calls_logged(first), calls_logged(second))
                time.sleep(0.02)
            first.kill()
            started = time.monotonic()
            answers = [requests.get(url, headers=headers, timeout=10) for _ in range(20)]
            assert [answer.status_code for answer in answers] == [200] * 20
            assert time.monotonic() - started < 5
            second.stop()
            answer = requests.get(url, headers=headers, timeout=30)
            assert (answer.status_code, answer.json()) == (
                503,
                {
                    "error": "service_unavailable",
                    "message": "The service is unavailable; please try again.",
                },
            )


def test_links_follow_the_public_url_or_a_trusted_proxy(tmp_path: Path) -> None:
    """Every replica writes the same absolute links: CRMGATE_PUBLIC_URL, else the request's
    Host, with X-Forwarded-Proto/Host honoured only from a trusted proxy."""
    run_admin(tmp_path, "tenant", "create", "acme", "--host", "crm.example.com")
    key = run_admin(tmp_path, "apikey", "create", "--tenant", "acme", "--kind", "close")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "crm.example.com"}

    def upload_url(http_url: str, headers: dict[str, str]) -> str:
        answer = requests.post(
            http_url + "/api/v1/files/upload/",
            auth=(key, ""),
            json={"filename": "a.txt", "content_type": "text/plain"},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["download"]["url"]

    serve = ("serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(tmp_path))
    with launched(*serve, "--trusted-proxy", "127.0.0.0/8", expect=frozenset({"http"})) as proxied:
        url = upload_url(proxied.addresses["http"], forwarded)
        assert url.startswith("https://crm.example.com/files/download/file_")
    with launched(*serve, expect=frozenset({"http"})) as direct:
        http_url = direct.addresses["http"]
        url = upload_url(http_url, {**forwarded, "Host": "crm.example.com"})
        assert url.startswith("http://crm.example.com/files/download/")  # headers ignored
    env = {"CRMGATE_PUBLIC_URL": "https://files.example.net/"}
    with launched(*serve, expect=frozenset({"http"}), env=env) as pinned:
        url = upload_url(pinned.addresses["http"], forwarded)
        assert url.startswith("https://files.example.net/files/download/")

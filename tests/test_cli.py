"""`crmgate admin`: what operators type, and the one-line errors they get back."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import uvloop

from server.cli import run_loop
from tests.support.processes import crmgate_command


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        crmgate_command("admin", "--data-dir", str(data_dir), *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def test_operator_commands(tmp_path: Path) -> None:
    assert admin(tmp_path, "tenant", "create", "acme", "--host", "acme.example").stdout == "acme\n"
    key = admin(tmp_path, "apikey", "create", "--tenant", "acme", "--kind", "c2c").stdout
    assert key.startswith("c2c_") and key.count("\n") == 1  # only the key
    listed = admin(tmp_path, "apikey", "list", "--tenant", "acme").stdout
    key_id = listed.split("\t")[0]
    assert key.strip() not in listed
    assert admin(tmp_path, "apikey", "revoke", key_id).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant", "create", "acme"), "crmgate: tenant 'acme' already exists\n"),
        (
            ("tenant", "create", "other", "--host", "acme.example"),
            "crmgate: host 'acme.example' is bound to another tenant\n",
        ),
        (
            ("apikey", "create", "--tenant", "nobody", "--kind", "c2c"),
            "crmgate: no tenant named 'nobody'\n",
        ),
        (("apikey", "revoke", "key_unknown"), "crmgate: no active key 'key_unknown'\n"),
        (
            (
                "user",
                "create",
                "--tenant",
                "acme",
                "--email",
                "a@acme.example",
                "--password",
                "short",
            ),
            "crmgate: passwords need at least 8 characters\n",
        ),
        (
            ("user", "delete", "--email", "ghost@acme.example"),
            "crmgate: no user with email 'ghost@acme.example'\n",
        ),
    ],
)
def test_operator_mistakes_are_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    admin(tmp_path, "tenant", "create", "acme", "--host", "acme.example")
    result = admin(tmp_path, *args)
    assert (result.returncode, result.stderr, result.stdout) == (1, message, "")


def test_a_duplicate_contact_is_one_line(tmp_path: Path) -> None:
    """The live-email rule holds for operators too: same email, any case or spacing."""
    admin(tmp_path, "tenant", "create", "acme")
    created = admin(tmp_path, "contact", "create", "--tenant", "acme", "--email", "a@x.example")
    assert created.returncode == 0
    result = admin(tmp_path, "contact", "create", "--tenant", "acme", "--email", " A@X.example")
    assert (result.returncode, result.stderr, result.stdout) == (
        1,
        "crmgate: tenant 'acme' has a contact with email 'a@x.example' already\n",
        "",
    )


def test_bad_locale_setting_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        crmgate_command("admin", "--data-dir", str(tmp_path), "tenant", "create", "x"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CRMGATE_DEFAULT_LOCALE": "fr"},
    )
    assert (
        result.returncode == 2 and "CRMGATE_DEFAULT_LOCALE must be one of en, es" in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--read-timeout", "0"), {}, "CRMGATE_READ_TIMEOUT must be a positive number"),
        ((), {"CRMGATE_READ_TIMEOUT": "soon"}, "CRMGATE_READ_TIMEOUT must be a positive number"),
        (("--max-large-uploads", "0"), {}, "CRMGATE_MAX_LARGE_UPLOADS must be at least 1"),
        ((), {"CRMGATE_MAX_LARGE_UPLOADS": "-1"}, "CRMGATE_MAX_LARGE_UPLOADS must be a positive"),
    ],
)
def test_bad_connection_limits_are_refused(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        crmgate_command("serve", "--data-dir", str(tmp_path), "--http-port", "0", *args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_migrate_brings_the_schema_up_to_date(tmp_path: Path) -> None:
    from server.database.migrations import MIGRATIONS

    done = admin(tmp_path, "migrate")
    assert (done.returncode, done.stdout) == (0, f"schema version {MIGRATIONS[-1][0]}\n")
    assert (tmp_path / "crmgate.sqlite3").exists()


def test_serving_commands_run_on_uvloop() -> None:
    """`serve`, `server` and `gateway` run their event loop through run_loop: uvloop."""

    async def loop_type() -> int:
        return int(isinstance(asyncio.get_running_loop(), uvloop.Loop))

    assert run_loop(loop_type()) == 1

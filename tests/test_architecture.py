"""The boundaries the layout promises, checked on what Python actually loads."""

from __future__ import annotations

import json
import subprocess
import sys

#: What only the server may load: the database, its drivers, image and file sniffing.
SERVER_ONLY = ("server", "peewee", "playhouse", "psycopg2", "PIL", "magic", "openpyxl", "boto3")


def loaded_after(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running `statement`."""
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return {name.split(".")[0] for name in json.loads(result.stdout)}


def test_the_gateway_loads_nothing_of_the_server() -> None:
    loaded = loaded_after(
        "import gateway.app, gateway.calls, gateway.surfaces\ngateway.surfaces.default_surfaces()"
    )
    assert "aiohttp" in loaded and "grpc" in loaded  # the check itself can fail
    assert loaded.isdisjoint(SERVER_ONLY), sorted(loaded & set(SERVER_ONLY))


def test_shared_modules_load_neither_side() -> None:
    loaded = loaded_after("import gateway.contract, gateway.localisation")
    assert loaded.isdisjoint({"aiohttp", *SERVER_ONLY}), sorted(loaded)

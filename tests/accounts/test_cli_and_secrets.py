"""The registry from a shell (`balance-gateway accounts ...`, `store rotate-key`) on SQLite and
PostgreSQL, and what a dump of the database holds: no credential or gateway key in plain text."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


from gateway.simulation.world import World, to_toml
from tests.store_db import new_encryption_key, store_block

UUID = "28ad7b3d-9964-449d-a5f9-3c7109833064"
CALICO_TOKEN = "calico-secret-token-0451"
DALP_KEY = "dalp-participant-key-7781"


def write_config(path: Path, url: str, keys: list[str]) -> str:
    raw = World(seed=1).config_dict("http://127.0.0.1:9")   # sources only; nothing is called
    raw["accounts"] = []
    raw["store"] = store_block(url, keys)
    path.write_text(to_toml(raw))
    return str(path)


def cli(config: str, *args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args[:2], "--config", config, *args[2:]],
                          capture_output=True, text=True, timeout=60, input=stdin,
                          env={**os.environ, **(env or {})})


def ok(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.lstrip().startswith(("{", "[")) else done.stdout


def dump(url: str) -> str:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return "\n".join(conn.iterdump())
    done = subprocess.run(["pg_dump", "--no-owner", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_onboards_an_account_and_a_dump_holds_no_secret(store_url, tmp_path):
    config = write_config(tmp_path / "gw.toml", store_url, [new_encryption_key()])
    assert "migrated" in ok(cli(config, "store", "migrate"))
    created = ok(cli(config, "accounts", "create", "gina"))
    assert created["id"] == "gina" and created["links"] == []
    linked = ok(cli(config, "accounts", "link", "gina", "--source", "calico", "--secret-env", "TOKEN_FOR_TEST",
                    env={"TOKEN_FOR_TEST": CALICO_TOKEN}))
    assert linked["links"] == [{"source": "CALICO", "identity": "token", "credentialHint": "0451"}]
    ok(cli(config, "accounts", "link", "gina", "--source", "DALP", "--secret-stdin", stdin=DALP_KEY + "\n"))
    ok(cli(config, "accounts", "link", "gina", "--source", "COBO", "--wallet-uuid", UUID))
    bad = cli(config, "accounts", "link", "gina", "--source", "COBO", "--wallet-uuid", "not-a-uuid")
    assert bad.returncode == 1 and "BAD_USER_INPUT" in bad.stderr and "link.walletUuids[0]" in bad.stderr
    assert cli(config, "accounts", "link", "gina", "--source", "CALICO", "--token", CALICO_TOKEN).returncode == 2
    issued = ok(cli(config, "accounts", "issue-key", "gina", "--label", "ci"))
    key = issued["key"]
    listed = ok(cli(config, "accounts", "list"))
    assert [a["id"] for a in listed] == ["gina"] and [k["keyId"] for k in listed[0]["apiKeys"]] == [issued["keyId"]]
    assert {(l["source"], l["identity"]) for l in listed[0]["links"]} == {("CALICO", "token"), ("DALP", "api_key"), ("COBO", UUID)}
    text = json.dumps(listed)
    assert CALICO_TOKEN not in text and DALP_KEY not in text and key not in text

    snapshot = dump(store_url)
    assert UUID in snapshot and "gina" in snapshot                           # the right database
    assert hashlib.sha256(key.encode()).hexdigest() in snapshot             # keys: digests only
    for secret in (CALICO_TOKEN, DALP_KEY, key, key.removeprefix("bgk_")):
        assert secret not in snapshot
    assert "create_account" in snapshot and "link_source" in snapshot        # the audit, without secrets

    assert ok(cli(config, "accounts", "revoke-key", "gina", issued["keyId"]))["revoked"] is True
    again = cli(config, "accounts", "revoke-key", "gina", issued["keyId"])
    assert again.returncode == 1 and "NOT_FOUND" in again.stderr
    assert ok(cli(config, "accounts", "delete", "gina"))["deleted"] is True
    assert ok(cli(config, "accounts", "list")) == []


def test_rotate_key_reseals_every_credential_under_the_first_key(store_url, tmp_path):
    old, new = new_encryption_key(), new_encryption_key()
    config = write_config(tmp_path / "old.toml", store_url, [old])
    ok(cli(config, "store", "migrate"))
    for account in ("hal", "ida"):
        ok(cli(config, "accounts", "create", account))
        ok(cli(config, "accounts", "link", account, "--source", "CRYPTOFUSE", "--secret-env", "T",
               env={"T": f"cryptofuse-token-of-{account}"}))
    both = write_config(tmp_path / "both.toml", store_url, [new, old])
    assert "2 credential(s) re-sealed" in ok(cli(both, "store", "rotate-key"))
    assert "0 credential(s) re-sealed with the first key, 2 already were" in ok(cli(both, "store", "rotate-key"))
    only_new = write_config(tmp_path / "new.toml", store_url, [new])
    listed = ok(cli(only_new, "accounts", "list"))
    assert [(a["id"], a["links"][0]["credentialHint"]) for a in listed] == [("hal", "-hal"), ("ida", "-ida")]
    # the old key alone opens nothing any more: those accounts are left out, never half-read
    only_old = write_config(tmp_path / "stale.toml", store_url, [old])
    assert ok(cli(only_old, "accounts", "list")) == []


def test_cli_refuses_an_unmigrated_store_naming_the_command(sqlite_url, tmp_path):
    config = write_config(tmp_path / "gw.toml", sqlite_url, [new_encryption_key()])
    done = cli(config, "accounts", "list")
    assert done.returncode != 0 and "balance-gateway store migrate" in done.stderr and "Traceback" not in done.stderr

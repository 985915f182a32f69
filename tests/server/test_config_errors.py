"""Every bad config value stops startup with one line naming the field — never a traceback,
never the value (gateway/support/config_checks.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gateway.server import cli
from gateway.config import ConfigError, parse_config
from gateway.upstream.redis_client import SINGLE_SCHEMES as REDIS_URL_SCHEMES

BASE = '''
[sources.cobo]
base_url = "http://127.0.0.1:1/cobo"
api_key = "k"
[sources.dalp]
base_url = "http://127.0.0.1:1/dalp"
api_key = "k"
[sources.onebalance]
base_url = "http://127.0.0.1:1/ob"
api_key = "k"
'''


def _files(tmp_path) -> dict[str, str]:
    (tmp_path / "not.json").write_text("this is not json")
    (tmp_path / "wrong-shape.json").write_text(json.dumps({"operations": [{"id": "x"}]}))
    (tmp_path / "no-keys.json").write_text(json.dumps({"keys": [{"kty": "nope"}]}))
    return {"missing": str(tmp_path / "missing.json"), "not_json": str(tmp_path / "not.json"),
            "wrong_shape": str(tmp_path / "wrong-shape.json"), "no_keys": str(tmp_path / "no-keys.json")}


# (field named in the error, TOML put before BASE)
BAD = [
    ("cache.redis_url", '[cache]\nredis_url = "redis+cluster://:hunter2@h:6379/3"'),
    ("cache.redis_url", '[cache]\nredis_url = "redis://:hunter2@h:notaport/0"'),
    ("cache.redis_url", '[cache]\nredis_url = "redis://:hunter2@h:6379/zero"'),
    ("cache.redis_url", '[cache]\nredis_url = "http://:hunter2@h"'),
    ("auth.jwt.jwks_file", '[auth.jwt]\njwks_file = "{missing}"'),
    ("auth.jwt.jwks_file", '[auth.jwt]\njwks_file = "{not_json}"'),
    ("auth.jwt.jwks_file", '[auth.jwt]\njwks_file = "{no_keys}"'),
    ("persisted_queries.manifest", '[persisted_queries]\nmanifest = "{missing}"'),
    ("persisted_queries.manifest", '[persisted_queries]\nmanifest = "{not_json}"'),
    ("persisted_queries.manifest", '[persisted_queries]\nmanifest = "{wrong_shape}"'),
    ("server.host", '[server]\nhost = "not a host!"'),
    ("server.port", '[server]\nport = 70000'),
    ("server.cors_origins", '[server]\ncors_origins = ["https://app.example.com/path"]'),
    ("server.csrf_required_headers", '[server]\ncsrf_required_headers = ["bad header"]'),
    ("server.header_timeout_s", '[server]\nheader_timeout_s = 0'),
    ("server.max_connections", '[server]\nmax_connections = 0'),
    ("observability.otlp_endpoint", '[observability]\notlp_endpoint = "collector:4318"'),
    ("limits.max_json_depth", '[limits]\nmax_json_depth = 1'),
    ("limits.max_representations", '[limits]\nmax_representations = 0'),
    ("sources.calico.base_url", '[sources.calico]\nbase_url = "https://exa mple.com"'),
    ("sources.calico.base_url", '[sources.calico]\nbase_url = "https://h:99999"'),
    ("accounts.0.onebalance.accounts", '[[accounts]]\nid = "a"\nonebalance = { accounts = ["eip155:1:nothex"] }'),
    ("accounts.0.dalp.wallet", '[[accounts]]\nid = "a"\ndalp = { wallet = "0x123" }'),
    ("accounts.0.cobo.wallet_uuids.0", '[[accounts]]\nid = "a"\ncobo = { wallet_uuids = [""] }'),
]


def _config(fragment: str, files: dict[str, str]) -> str:
    for name, path in files.items():
        fragment = fragment.replace("{" + name + "}", path)
    # [[accounts]] must come after the source tables it uses
    return BASE + fragment + "\n" if fragment.startswith("[[accounts]]") else fragment + "\n" + BASE


@pytest.mark.parametrize("field,fragment", BAD, ids=[f"{f}:{i}" for i, (f, _) in enumerate(BAD)])
def test_a_bad_value_is_one_line_naming_its_field(tmp_path, field, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(fragment, _files(tmp_path)), {})
    message = str(caught.value)
    assert field in message and "\n" not in message
    assert "hunter2" not in message   # a Redis URL's password is a secret


@pytest.mark.parametrize("field,fragment", [BAD[0], BAD[4], BAD[9], BAD[10]])
def test_serve_and_check_config_say_so_without_a_traceback(tmp_path, field, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(_config(fragment, _files(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    for command in (["serve", "--config", str(config), "--port", "1"], ["check-config", str(config)]):
        result = subprocess.run([sys.executable, "-m", "gateway", *command], capture_output=True, text=True,
                                env=env, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("balance-gateway: ") and field in lines[0], result.stderr
        assert "Traceback" not in result.stderr + result.stdout and "hunter2" not in result.stderr


def test_every_redis_scheme_the_gateway_accepts_is_valid():
    for scheme in REDIS_URL_SCHEMES:
        url = "unix:///run/redis.sock" if scheme == "unix" else f"{scheme}://:pw@127.0.0.1:6379/3"
        assert parse_config(f'[cache]\nredis_url = "{url}"\n', {}).cache.redis_url.get_secret_value() == url


def test_an_app_that_cannot_be_built_is_one_line_too(tmp_path, monkeypatch, capsys):
    """The net under the checks: whatever else fails while building the app."""
    config = tmp_path / "ok.toml"
    config.write_text(BASE)

    def broken(*_):
        raise RuntimeError("details that may hold a secret")
    monkeypatch.setattr(cli, "_build_app", broken)
    assert cli.main(["serve", "--config", str(config), "--port", "1", "--log-format", "text"]) == 2
    err = capsys.readouterr().err
    assert "cannot start with this config (RuntimeError" in err and "secret" not in err and "Traceback" not in err

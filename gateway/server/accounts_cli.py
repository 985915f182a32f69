"""`balance-gateway accounts create|delete|link|unlink|issue-key|revoke-key|list`: the
registry's admin operations from a shell, against the `[store]` of a config file.

Secrets never come from argv (where `ps` and shell history would show them): a token or key
is read from an environment variable (`--secret-env NAME`) or from stdin (`--secret-stdin`)."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any

from gateway.server.store_cli import store_config


def _secret(args: argparse.Namespace) -> str | None:
    if args.secret_env:
        if args.secret_env not in os.environ:
            raise SystemExit(f"balance-gateway: environment variable {args.secret_env} is not set")
        return os.environ[args.secret_env]
    if args.secret_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return None


def _link_input(args: argparse.Namespace) -> Any:
    from gateway.accounts.links import LinkInput
    source = args.source.upper()
    secret = _secret(args)
    token = secret if source in ("CALICO", "CRYPTOFUSE") else None
    api_key = secret if source == "DALP" else None
    if secret is not None and token is None and api_key is None:
        raise SystemExit(f"balance-gateway: {source} takes no secret")
    return LinkInput(source=source, token=token, api_key=api_key, accounts=args.account or None,
                     wallet_uuids=args.wallet_uuid or None, wallet=args.wallet)


def _show(stored: Any) -> dict[str, Any]:
    return {"id": stored.id, "createdAt": stored.created_at.isoformat(),
            "links": [{"source": l.source.value, "identity": l.identity, "credentialHint": l.hint} for l in stored.links],
            "apiKeys": [{"keyId": k.key_id, "label": k.label, "createdAt": k.created_at.isoformat(),
                         "lastUsedAt": k.last_used_at.isoformat() if k.last_used_at else None} for k in stored.keys]}


async def _run(args: argparse.Namespace, config: Any) -> Any:
    from gateway.accounts.service import build_registry
    from gateway.store.schema_version import startup_problem
    problem = await startup_problem(config.store)
    if problem:
        raise SystemExit(f"balance-gateway: {problem}")
    service = build_registry(config)
    assert service is not None
    registry, actor = service.registry, f"cli:{getpass.getuser()}"
    try:
        if args.verb == "create":
            return _show(await registry.create_account(actor, args.id))
        if args.verb == "delete":
            return {"deleted": await registry.delete_account(actor, args.id)}
        if args.verb == "link":
            return _show(await registry.link(actor, args.id, _link_input(args)))
        if args.verb == "unlink":
            return _show(await registry.unlink(actor, args.id, args.source.upper(), args.identity))
        if args.verb == "issue-key":
            issued = await registry.issue_key(actor, args.id, args.label)
            return {"keyId": issued.key_id, "key": issued.key, "label": issued.label,
                    "note": "the key is shown this once; only its SHA-256 is stored"}
        if args.verb == "revoke-key":
            return {"revoked": await registry.revoke_key(actor, args.id, args.key_id)}
        accounts = await registry.list_accounts()
        return [_show(a) for a in accounts if args.id is None or a.id == args.id]
    finally:
        await service.close()


def _accounts(args: argparse.Namespace) -> int:
    from gateway.accounts.errors import RegistryError
    config = store_config(args)
    if config is None:
        return 2
    try:
        result = asyncio.run(_run(args, config))
    except RegistryError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"balance-gateway: {exc.code.value}: {exc.message}{where}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def add_accounts_commands(sub: argparse._SubParsersAction) -> None:
    accounts = sub.add_parser("accounts", help="the account registry: create, link, key and list accounts")
    verbs = accounts.add_subparsers(dest="verb", required=True)

    def verb(name: str, help: str, *, account: bool = True) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help)
        parser.add_argument("--config", help="TOML config file with a [store] block (default: $GATEWAY_CONFIG)")
        if account:
            parser.add_argument("id", help="the account id")
        parser.set_defaults(func=_accounts)
        return parser
    verb("create", "a new account with no links")
    verb("delete", "an account, its links and its keys")
    link = verb("link", "link one source's identity")
    link.add_argument("--source", required=True, help="CALICO, CRYPTOFUSE, ONEBALANCE, COBO or DALP")
    secret = link.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", metavar="NAME", help="read the token (CALICO, CRYPTOFUSE) or DALP key from $NAME")
    secret.add_argument("--secret-stdin", action="store_true", help="read the token or DALP key from stdin's first line")
    link.add_argument("--account", action="append", help="ONEBALANCE: a CAIP-10 account (repeatable)")
    link.add_argument("--wallet-uuid", action="append", help="COBO: a wallet UUID (repeatable)")
    link.add_argument("--wallet", help="DALP: a wallet address read with the source-level key")
    unlink = verb("unlink", "unlink one identity of a source, or all of it")
    unlink.add_argument("--source", required=True)
    unlink.add_argument("--identity", help="the identity to unlink (default: all of that source)")
    issue = verb("issue-key", "a new gateway key for the account, printed once")
    issue.add_argument("--label")
    revoke = verb("revoke-key", "revoke one of the account's gateway keys")
    revoke.add_argument("key_id")
    listing = verb("list", "the registry's accounts (or one), credentials redacted", account=False)
    listing.add_argument("id", nargs="?")

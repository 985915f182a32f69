"""`balance-gateway serve|check-config|export-schema|store|accounts` (also `python -m gateway`)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import uvicorn

from gateway.observability.logs import LOG_FORMATS, configure_logging


# How `serve` hands its choices to worker processes (uvicorn starts them afresh).
_WORKER_ENV = "BALANCE_GATEWAY_WORKER"
# Extra source specs (gateway/sources/catalog.py SPECS_ENV; a problem with them is raised,
# as an ImportError with this name, when the catalog is first imported).
_SPECS_ENV = "GATEWAY_SOURCE_SPECS"


def _build_app(config_path: str | None, host: str, port: int) -> Any:
    if config_path:
        from gateway.server.app import create_app
        from gateway.config import load_config
        return create_app(load_config(config_path))
    from gateway.server.demo import demo_app
    return demo_app(host, port)


def worker_app() -> Any:
    """App factory for `--workers N`: each worker process builds its own app (own pools,
    caches and breakers; share Redis to share the cache and limits)."""
    spec = json.loads(os.environ[_WORKER_ENV])
    configure_logging(spec["log_format"], spec["log_level"])
    return _build_app(spec["config"], spec["host"], spec["port"])


def _serve(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, ServerConfig, load_config
    from gateway.server.connection_guard import uvicorn_options

    config_path = args.config or os.environ.get("GATEWAY_CONFIG")
    if config_path:
        try:
            config = load_config(config_path)   # fail fast, in the parent, with a clear message
        except ConfigError as exc:
            print(f"balance-gateway: {exc}", file=sys.stderr)
            return 2
        from gateway.server.store_cli import serve_check
        problem = serve_check(config)
        if problem:
            print(f"balance-gateway: {problem}", file=sys.stderr)
            return 2
        server = config.server
        host = args.host or config.server.host
        port = args.port if args.port is not None else config.server.port
    else:
        from gateway.server.demo import is_loopback
        server = ServerConfig()
        host = args.host or "127.0.0.1"
        port = args.port if args.port is not None else 8000
        if not is_loopback(host) and not args.allow_remote_demo:
            # The demo has a public key, open GraphiQL and the simulators' fault injection.
            print(f"balance-gateway: the demo listens on loopback only; --host {host} is not a loopback "
                  f"address (add --allow-remote-demo to serve it there anyway)", file=sys.stderr)
            return 2
        from gateway.server.demo import demo_banner
        print(demo_banner(host, port), flush=True)
    # log_config=None: uvicorn's own loggers propagate to the root handler set up in main().
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to the
    # graceful timeout), then runs the app's shutdown (closing upstream pools and Redis).
    # The [server] connection limits: read deadlines, keep-alive, the connection cap.
    options = dict(host=host, port=port, log_level=args.log_level, access_log=False, log_config=None,
                   timeout_graceful_shutdown=args.graceful_timeout, **uvicorn_options(server))
    if args.workers > 1:
        from gateway.observability.worker_metrics import shared_metrics_dir
        os.environ[_WORKER_ENV] = json.dumps({"config": config_path, "host": host, "port": port,
                                              "log_format": args.log_format, "log_level": args.log_level})
        with shared_metrics_dir():   # one /metrics view over every worker
            uvicorn.run("gateway.server.cli:worker_app", factory=True, workers=args.workers, **options)
    else:
        try:
            app = _build_app(config_path, host, port)
        except Exception as exc:   # a value the config checks let through: still no traceback
            logging.getLogger("gateway.cli").debug("building the app failed", exc_info=True)
            print(f"balance-gateway: cannot start with this config ({type(exc).__name__} while building the app; "
                  f"run with --log-level debug for details)", file=sys.stderr)
            return 2
        uvicorn.run(app, **options)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """Validate a config: name every missing variable, then print the effective config
    with every secret masked."""
    from gateway.config import ConfigError, missing_variables, parse_config

    try:
        text = open(args.file).read()
    except OSError as exc:
        print(f"balance-gateway: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    missing = missing_variables(text)
    if missing:
        print("balance-gateway: environment variables not set: " + ", ".join(missing), file=sys.stderr)
        return 2
    try:
        config = parse_config(text)
    except ConfigError as exc:
        print(f"balance-gateway: {exc}", file=sys.stderr)
        return 2
    # mode="json" renders SecretStr as "**********": the effective config, secrets masked.
    print(json.dumps(config.model_dump(mode="json"), indent=2))
    return 0


def _export_schema(args: argparse.Namespace) -> int:
    from schema import schema
    text = schema.as_str() + "\n"
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="balance-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the gateway (the embedded demo when no config is given)")
    serve.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG; none: the demo)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", "1")),
                       help="worker processes (default 1; $GATEWAY_WORKERS)")
    serve.add_argument("--graceful-timeout", type=float, default=10.0,
                       help="seconds to let requests in flight finish on shutdown (default 10)")
    serve.add_argument("--allow-remote-demo", action="store_true",
                       help="let the demo (no config) listen on a non-loopback --host")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("GATEWAY_LOG_FORMAT", "json"),
                       help="json: one JSON object per line with request_id (default; $GATEWAY_LOG_FORMAT); text")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file and print it with secrets masked")
    check.add_argument("file")
    check.set_defaults(func=_check_config)
    export = sub.add_parser("export-schema", help="print the public schema as SDL")
    export.add_argument("--output", "-o")
    export.set_defaults(func=_export_schema)
    try:   # it imports the config, hence the source catalog: a bad GATEWAY_SOURCE_SPECS shows here
        from gateway.server.store_cli import add_store_commands
    except ImportError as exc:
        if exc.name != _SPECS_ENV:
            raise
        print(f"balance-gateway: {exc}", file=sys.stderr)
        return 2
    add_store_commands(sub)
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "info"))
    try:
        return args.func(args)
    except ImportError as exc:
        if exc.name != _SPECS_ENV:
            raise
        print(f"balance-gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`balance-gateway serve|export-schema` (also `python -m gateway`)."""
from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from gateway.logging_setup import LOG_FORMATS, configure_logging


def _serve(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    config_path = args.config or os.environ.get("GATEWAY_CONFIG")
    if config_path:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            print(f"balance-gateway: {exc}", file=sys.stderr)
            return 2
        host = args.host or config.server.host
        port = args.port if args.port is not None else config.server.port
        from gateway.app import create_app
        app = create_app(config)
    else:
        host = args.host or "127.0.0.1"
        port = args.port if args.port is not None else 8000
        from gateway.demo import demo_app
        app = demo_app(host, port)
        print(f"Balance Gateway demo: GraphiQL at http://{host}:{port}/graphql "
              f"(header Authorization: Bearer demo-key)", flush=True)
    # log_config=None: uvicorn's own loggers propagate to the root handler set up in main().
    uvicorn.run(app, host=host, port=port, log_level=args.log_level, access_log=False, log_config=None)
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
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("GATEWAY_LOG_FORMAT", "json"),
                       help="json: one JSON object per line with request_id (default; $GATEWAY_LOG_FORMAT); text")
    serve.set_defaults(func=_serve)
    export = sub.add_parser("export-schema", help="print the public schema as SDL")
    export.add_argument("--output", "-o")
    export.set_defaults(func=_export_schema)
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "info"))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

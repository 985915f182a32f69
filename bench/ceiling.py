"""The throughput ceiling: a bare Starlette endpoint answering POST /graphql with fixed JSON.

    .venv/bin/python -m bench.ceiling --port 9200 --body-file response.json

No gateway work at all (it still reads the request body, as any POST handler must), served
with the same uvicorn settings as `python -m gateway serve`, so the gap between the two is
what the gateway itself costs per request.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app(body: bytes) -> Starlette:
    async def graphql(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"]), Route("/health", health)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", required=True)
    args = parser.parse_args(argv)
    app = create_app(Path(args.body_file).read_bytes())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

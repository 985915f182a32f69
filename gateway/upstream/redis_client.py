"""Build the client for a `[cache] redis_url`: one Redis server, or a Redis Cluster.

The one place that knows how a `redis_url` becomes a connection; everything that talks
to Redis (response cache, rate limits, persisted queries, change notices, pub/sub)
gets its client from `build_redis_client`.

* `redis://`, `rediss://` (TLS), `unix://`: one server (redis-py's URL grammar; the
  path is the database number).
* `redis+cluster://[user:password@]host:port[,host:port...]`, `rediss+cluster://`: a
  Redis Cluster (redis-py's `RedisCluster`). One seed node is enough: the client asks it
  for the cluster's layout; more seeds are tried when the first does not answer. A
  cluster has only database 0.

Keys a script or transaction touches together must share a hash tag (`hash_tag`), or a
cluster refuses them with CROSSSLOT. `check_redis_url` explains a bad URL in one line
without echoing it (it may hold a password).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}   # scheme -> TLS
SINGLE_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PORT = 6379

# Query options taken as text (redis-py parses the others, URL_QUERY_ARGUMENT_PARSERS).
_TEXT_OPTIONS = {"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                 "ssl_ciphers", "client_name"}


@dataclass(frozen=True)
class RedisTarget:
    """What a redis_url names; `nodes` are the seeds of a cluster or the one server."""
    cluster: bool
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    options: dict[str, Any] = field(default_factory=dict)   # username, password, parsed query


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_url_from_seeds(seeds: list[str]) -> str:
    """`redis+cluster://a:1,b:2` from seed URLs or host:port strings (`rediss://` seeds
    give `rediss+cluster://`); credentials and options are taken from the first seed."""
    if not seeds:
        raise ValueError("a list of seed nodes needs at least one host:port")
    hosts, first_rest, tls = [], "", False
    for i, seed in enumerate(seeds):
        scheme, sep, rest = seed.partition("://")
        if not sep:
            scheme, rest = "redis", seed
        scheme = scheme.lower().removesuffix("+cluster")
        if scheme not in ("redis", "rediss"):
            raise ValueError("each seed node must be host:port or a redis:// / rediss:// URL")
        tls = tls or scheme == "rediss"
        userinfo, at, hostpart = rest.rpartition("@")
        hostport, slash, tail = hostpart.partition("/")
        hosts.append(hostport)
        if i == 0:
            first_rest = (userinfo + at, slash + tail)
    prefix, tail = first_rest
    return f"{'rediss' if tls else 'redis'}+cluster://{prefix}{','.join(hosts)}{tail}"


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):                      # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError("a node needs a host (host:port)")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("a node's port must be a number from 1 to 65535")
    return host, int(port) if port else DEFAULT_PORT


def _options(query: str, cluster: bool) -> dict[str, Any]:
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
    allowed = set(URL_QUERY_ARGUMENT_PARSERS) | _TEXT_OPTIONS
    if cluster:
        from redis.asyncio.cluster import RedisCluster
        allowed &= set(inspect.signature(RedisCluster.__init__).parameters) - {"db"}
    out: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            raise ValueError(f"unknown option {name!r} in the URL" + (" (a cluster takes no db)" if name == "db" else ""))
        parser = URL_QUERY_ARGUMENT_PARSERS.get(name)
        try:
            out[name] = parser(value) if parser else value
        except (TypeError, ValueError):
            raise ValueError(f"option {name!r} in the URL has an invalid value") from None
    return out


def parse_redis_url(url: str) -> RedisTarget:
    """The target a redis_url names; ValueError (one line, no URL in it) when it is unusable."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (*SINGLE_SCHEMES, *CLUSTER_SCHEMES):
        raise ValueError("must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    userinfo, at, hostpart = rest.rpartition("@")
    options: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon:
            options["password"] = unquote(password)
    if scheme == "unix":
        if not hostpart.startswith("/") or len(hostpart) < 2:
            raise ValueError("a unix:// URL needs a socket path (unix:///path/to/redis.sock)")
        return RedisTarget(False, False, (), {**options, **_options(query, False), "path": unquote(hostpart)})
    netloc, _, path = hostpart.partition("/")
    db = path.strip("/")
    if db and not db.isdigit():
        raise ValueError("the database (the URL's path) must be a number")
    cluster = scheme in CLUSTER_SCHEMES
    if cluster and db not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    nodes = tuple(_host_port(n.strip()) for n in netloc.split(",")) if netloc.strip() else ()
    if not nodes:
        raise ValueError("needs a host (redis://host:port)")
    if not cluster and len(nodes) > 1:
        raise ValueError("several hosts name a cluster: use redis+cluster://host:port,host:port")
    parsed = _options(query, cluster)
    if not cluster and db:
        parsed.setdefault("db", int(db))
    tls = CLUSTER_SCHEMES[scheme] if cluster else scheme == "rediss"
    return RedisTarget(cluster, tls, nodes, {**options, **parsed})


def check_redis_url(url: str) -> str:
    """The URL when usable; otherwise ValueError saying why in one line (for the config)."""
    parse_redis_url(url)
    return url


def build_redis_client(url: str, *, timeout_s: float = 0.25, retries: int | None = None) -> Any:
    """A `redis.asyncio.Redis` for one server or a `redis.asyncio.RedisCluster` for a cluster.

    `timeout_s` bounds connecting and each reply (a URL's own socket_timeout wins);
    `retries` None keeps redis-py's default retry policy, a number sets that many
    immediate retries (0: one attempt, the caller's back-off decides the rest).
    Nothing connects here: the first command does.
    """
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    target = parse_redis_url(url)
    kwargs: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if retries is not None:
        kwargs["retry"] = Retry(NoBackoff(), retries)
    if not target.cluster:
        return aioredis.from_url(url.strip(), **kwargs)
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    kwargs.update(target.options)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                        ssl=target.tls, **kwargs)


def is_cluster_client(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster
    return isinstance(client, RedisCluster)


def database_of(client: Any) -> int:
    """The database number a client's keys live in (a cluster has only 0). Pub/sub channels
    are not per database: a channel that must stay within one deployment names it."""
    if is_cluster_client(client):
        return 0
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


async def learn_layout(client: Any) -> None:
    """Ask a cluster which node serves which slots (a no-op for one server). A cluster
    client otherwise does it inside its first command, which then takes several round
    trips: callers that bound each command tightly do this first, with more time."""
    if is_cluster_client(client):
        await client.initialize()


async def open_pubsub(client: Any) -> Any:
    """A PubSub on a client from `build_redis_client`. redis-py picks a cluster's pub/sub
    node by the channel's slot, so the layout is learnt first; PUBLISH on a cluster
    reaches subscribers on every node. When that node goes away the PubSub's reads fail:
    subscribe again on a fresh one."""
    await learn_layout(client)
    return client.pubsub()


def hash_tag(part: str) -> str:
    """`{part}`: keys holding the same tag land in one cluster slot (braces inside are dropped)."""
    return "{" + part.replace("{", "").replace("}", "") + "}"


__all__ = ["RedisTarget", "build_redis_client", "check_redis_url", "cluster_url_from_seeds", "database_of", "hash_tag",
           "is_cluster_client", "is_cluster_url", "learn_layout", "open_pubsub", "parse_redis_url"]

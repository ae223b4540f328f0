"""`tunefleet keys`: create and revoke API keys. These talk to Redis directly, not to the
gateway: an admin makes the first key before anyone can call the API with one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import redis
import typer

from cluster import render
from shared.settings import get_settings

keys_app = typer.Typer(help="API keys: each belongs to a tenant.", no_args_is_help=True)


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Argument(help="The tenant the key acts for.")],
    admin: Annotated[bool, typer.Option("--admin", help="Sees every tenant's.")] = False,
) -> None:
    """Print a new API key (shown this once; only its digest is stored). Talks to Redis
    directly: TUNEFLEET_REDIS_URL, else the embedded stack's Redis."""
    from shared.auth import KeyStore
    from shared.errors import InvalidInputError

    with _redis_url() as url:
        try:
            key = KeyStore.from_url(url).create(tenant, admin)
        except InvalidInputError as exc:
            render.fail(str(exc))
            raise typer.Exit(1) from exc
    render.out.print(key, highlight=False)


@keys_app.command("revoke")
def revoke_key(key: Annotated[str, typer.Argument(help="The key to revoke.")]) -> None:
    """Revoke an API key."""
    from shared.auth import KeyStore

    with _redis_url() as url:
        if not KeyStore.from_url(url).revoke(key):
            render.fail("no such key")
            raise typer.Exit(1)
    render.out.print("revoked")


@contextmanager
def _redis_url() -> Iterator[str]:
    """TUNEFLEET_REDIS_URL; else the running embedded stack's Redis; else the embedded
    Redis started on its data for a moment."""
    from cluster.redis_server import RedisServer

    settings = get_settings()
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    url_file = settings.embedded_redis_url_file
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError:
            url_file.unlink(missing_ok=True)  # left by a stack that did not stop cleanly
        else:
            yield url
            return
    with RedisServer(settings.home / "redis") as server:
        yield server.url

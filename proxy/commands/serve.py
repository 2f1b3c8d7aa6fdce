"""`guardstream serve`: run the proxy."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default: config, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: config, else 8080)")
    parser.add_argument("--upstream", default=None, help="upstream base URL, e.g. http://vllm:8000")
    parser.add_argument("--config", default=None, help="YAML config file (default: the built-in policy)")
    parser.add_argument("--upstream-key-env", default=None,
                        help="name of the environment variable holding the upstream API key")
    parser.add_argument("--redis-url", default=None, help="Redis URL for the verdict cache (default: in-memory)")
    parser.add_argument("--kafka-bootstrap", default=None, help="Kafka bootstrap servers for audit events "
                        "(default: a JSONL file)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])


def overrides_from(args: argparse.Namespace) -> dict[str, object]:
    return {
        "server.host": args.host,
        "server.port": args.port,
        "upstream.url": args.upstream,
        "upstream.api_key_env": args.upstream_key_env,
        "cache.redis_url": args.redis_url,
        "audit.kafka_bootstrap": args.kafka_bootstrap,
        "logging.level": args.log_level,
    }


def run(args: argparse.Namespace) -> int:
    from proxy.app import serve
    from proxy.config import ConfigError, error_lines, load_settings
    from proxy.logs import configure_logging
    from proxy.state import ProxyState

    try:
        settings = load_settings(args.config, overrides=overrides_from(args))
        configure_logging(settings.logging)
        state = ProxyState.build(settings)  # evaluators built and checked before anything listens
    except ConfigError as exc:
        print(error_lines(exc), file=sys.stderr)
        return 2
    describe_startup(settings, args.config)
    _install_uvloop()
    host, port = settings.server.host, settings.server.port
    try:
        asyncio.run(serve(settings, host, port, state=state, on_listening=lambda: print(
            f"guardstream: listening on http://{host}:{port}", file=sys.stderr, flush=True)))
    except ConfigError as exc:  # found at start-up, e.g. an unusable audit.spool_dir
        print(error_lines(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        print(f"guardstream: server.port: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def describe_startup(settings: object, config_path: str | None) -> None:
    """Say, in plain words on stderr, what this proxy runs with (then `listening on`, once it does)."""
    from proxy.config import Settings
    from proxy.urls import display_url

    assert isinstance(settings, Settings)
    lines = [
        f"guardstream: policy from {config_path or 'the built-in default policy'}",
        f"guardstream: upstream {display_url(settings.upstream.url)}",
        "guardstream: verdict cache " + (f"Redis at {display_url(settings.cache.redis_url)}" if settings.cache.redis_url
                                         else "in memory (no Redis configured)"),
        "guardstream: audit events " + (f"to Kafka {settings.audit.kafka_bootstrap}, topic {settings.audit.topic}"
                                        if settings.audit.kafka_bootstrap
                                        else f"to the JSONL file {settings.audit.jsonl_path} (no Kafka configured)"),
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - optional speed-up
        pass

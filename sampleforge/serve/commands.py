"""``sampleforge serve`` (HTTP API + web page) and ``sampleforge worker`` (a Celery worker for --broker)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError, file_in_the_way
from sampleforge.params import SPECS, add_arguments, int_at_least, positive_float
from sampleforge.serve.config import ServeConfig, check_token

DEFAULTS = ServeConfig()
LOAD_SETTINGS = ("precision", "offload", "decode_chunk", "quantize", "channels")  # how each model is loaded
TOKEN_ENV = "SAMPLEFORGE_TOKEN"
log = logging.getLogger("sampleforge.serve")


_positive_int = int_at_least(1)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer between 0 and 65535, got {text}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def check_listen(host: str, port: int) -> None:
    """Fail (UserInputError naming --host or --port) when the server could not listen on ``host``:``port``: a
    name that does not resolve, an address of another machine, a port in use or not allowed. Binds and closes
    every address the name resolves to, as the server will (before a model loads)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserInputError(f"--host {host}: cannot resolve it ({getattr(exc, 'strerror', None) or exc})") from None
    probes: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this machine lacks (IPv6): the server skips it too
                continue
            probes.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise UserInputError(_listen_problem(host, port, str(address[0]), exc)) from None
    finally:
        for sock in probes:
            sock.close()


def _listen_problem(host: str, port: int, address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"--port {port}: already in use on {address} (another server?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: {address} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"--port {port}: not allowed on {address} (ports below 1024 need root)"
    return f"--host {host} --port {port}: cannot listen on {address} ({exc.strerror or exc})"


def _shared_arguments(p: argparse.ArgumentParser) -> None:
    """Options the server and its Celery workers must agree on."""
    p.add_argument("--model", action="append", default=None,
                   help=f"{SPECS['model'].help}. serve: repeat it to serve several models (the first is the "
                        f"default; a request names one); worker: the one model it runs (default: {DEFAULTS.model})")
    p.add_argument("--storage", type=Path, default=DEFAULTS.storage,
                   help="directory for the job database and audio; shared by server and workers (default: %(default)s)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA > MPS > CPU)")
    add_arguments(p, LOAD_SETTINGS)
    p.add_argument("--max-batch", type=_positive_int, default=DEFAULTS.max_batch,
                   help="clips per generate() call, across compatible jobs (default: %(default)s)")
    p.add_argument("--max-attempts", type=_positive_int, default=DEFAULTS.max_attempts,
                   help="runs of a job interrupted by a dying worker before it fails (default: %(default)s)")
    p.add_argument("--lease-seconds", type=positive_float, default=DEFAULTS.lease_seconds,
                   help="a running job whose worker is silent this long is re-queued (default: %(default)s)")
    p.add_argument("--visibility-timeout", type=positive_float, default=DEFAULTS.visibility_timeout_s,
                   help="Redis redelivers an unacknowledged task after this many seconds (default: %(default)s)")
    p.add_argument("--durability", choices=("full", "fast"), default="full" if DEFAULTS.durable else "fast",
                   help="full: fsync result files and every database commit, finished jobs survive a power loss; "
                        "fast: survive a crash of the process only (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the HTTP API and web page",
        description="Serve the generation API (FastAPI + uvicorn) and the web page at /. Jobs persist in "
                    "SQLite under --storage; without --broker they run on in-process worker threads.")
    serve.add_argument("--host", default=DEFAULTS.host, help="bind address (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=DEFAULTS.port, help="(default: %(default)s)")
    serve.add_argument("--workers", type=_positive_int, default=DEFAULTS.workers,
                       help="in-process worker threads; 1 is right on CPU (default: %(default)s)")
    serve.add_argument("--broker", default=None, help="redis://host:port/db: run jobs on `sampleforge worker`s")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument("--token-file", type=Path, default=None,
                      help=f"require 'Authorization: Bearer TOKEN' on /v1/*, TOKEN read from this file "
                           f"(or set ${TOKEN_ENV}); without either, no auth")
    auth.add_argument("--token", default=None,
                      help=f"the token itself (visible to every user in `ps`: prefer --token-file or ${TOKEN_ENV})")
    serve.add_argument("--max-queue", type=_positive_int, default=DEFAULTS.max_queue,
                       help="queued + running jobs before 429 (default: %(default)s)")
    serve.add_argument("--ttl-hours", type=positive_float, default=DEFAULTS.ttl_hours,
                       help="delete finished jobs and their audio after this long (default: %(default)s)")
    serve.add_argument("--max-count", type=_positive_int, default=DEFAULTS.max_count, help="clips per job")
    serve.add_argument("--max-steps", type=_positive_int, default=DEFAULTS.max_steps, help="sampler steps per job")
    serve.add_argument("--max-duration", type=positive_float, default=DEFAULTS.max_duration, help="seconds")
    serve.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULTS.max_body_bytes)
    serve.add_argument("--cleanup-interval", type=positive_float, default=DEFAULTS.cleanup_interval_s,
                       help="seconds between TTL sweeps (default: %(default)s)")
    serve.add_argument("--max-connections", type=_positive_int, default=DEFAULTS.max_connections,
                       help="open connections before 503 (default: %(default)s)")
    serve.add_argument("--header-timeout", type=positive_float, default=DEFAULTS.header_timeout_s,
                       help="seconds for a request's line and headers to arrive (default: %(default)s)")
    serve.add_argument("--body-timeout", type=positive_float, default=DEFAULTS.body_timeout_s,
                       help="seconds for a request's body to arrive (default: %(default)s)")
    serve.add_argument("--keep-alive", type=positive_float, default=DEFAULTS.keep_alive_s,
                       help="seconds an idle keep-alive connection stays open (default: %(default)s)")
    _shared_arguments(serve)
    serve.set_defaults(func=run_serve)

    worker = subparsers.add_parser(
        "worker", help="run a Celery worker for `serve --broker`",
        description="Take generation jobs from the broker and write results into the shared --storage. "
                    "Run one per GPU (or one per CPU machine); kill it any time, its job runs again elsewhere.")
    worker.add_argument("--broker", required=True, help="redis://host:port/db (the server's --broker)")
    worker.add_argument("--pool", choices=["solo", "prefork", "threads"], default="solo",
                        help="celery pool; solo = one job at a time in this process (default)")
    worker.add_argument("--concurrency", type=_positive_int, default=1)
    _shared_arguments(worker)
    worker.set_defaults(func=run_worker)


def _models(args: argparse.Namespace) -> list[str]:
    """The --model values (default: the shipped model); a repeated one is refused."""
    models = list(args.model or [DEFAULTS.model])
    if len(set(models)) != len(models):
        raise UserInputError(f"--model given twice: {', '.join(models)}")
    return models


def _config(args: argparse.Namespace, **extra: Any) -> ServeConfig:
    in_the_way = file_in_the_way(args.storage)  # before loading the models: said with the flag
    if in_the_way:
        raise UserInputError(f"--storage {args.storage}: {in_the_way}")
    from sampleforge.serve.jobstore import check_database
    from sampleforge.serve.results import ResultFiles

    try:
        check_database(ResultFiles.db_path_in(args.storage))
    except UserInputError as exc:
        raise UserInputError(f"--storage {args.storage}: {exc}") from None
    return ServeConfig(
        storage=args.storage, model=_models(args)[0], broker=args.broker, max_batch=args.max_batch,
        max_attempts=args.max_attempts, lease_seconds=args.lease_seconds,
        visibility_timeout_s=args.visibility_timeout, durable=args.durability == "full", **extra,
    )


def read_token(args: argparse.Namespace) -> str | None:
    """The bearer token from --token-file, --token or $SAMPLEFORGE_TOKEN (None: no auth), checked.

    A token file may end with one newline; anything else around the token is refused (see check_token)."""
    if args.token_file is not None:
        try:
            token: str | None = args.token_file.read_text().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"--token-file {args.token_file}: cannot read it ({exc})") from None
        source = f"--token-file {args.token_file}"
    elif args.token is not None:
        token, source = args.token, "--token"
        log.warning("the token on the command line is visible to every user of this machine (ps); "
                    f"use --token-file or ${TOKEN_ENV}", extra={"event": "token_on_command_line"})
    else:
        token, source = os.environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
    try:
        check_token(token)
    except UserInputError as exc:
        raise UserInputError(f"{source}: {exc}") from None
    return token


def load_generator(model: str, args: argparse.Namespace | None = None) -> Any:
    """The backend for ``model`` with the command's load-time settings; a one-line error if it cannot load."""
    from sampleforge.backends import BackendOptions, load_backend
    from sampleforge.params import from_namespace

    if args is None:
        return load_backend(model)
    loading = argparse.Namespace(**{name: getattr(args, name, None) for name in LOAD_SETTINGS})
    return load_backend(model, BackendOptions.from_params(from_namespace(loading), args.device))


def check_broker(url: str) -> None:
    """A UserInputError naming --broker for a URL the Redis client cannot use (another scheme, a port that is not a
    number, no host, a database that is not a number), before any model loads: the server would accept jobs and
    fail to publish them for ever, and a worker stop with a traceback."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number or out of range
    except ValueError as exc:
        raise UserInputError(f"--broker {url}: {exc}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise UserInputError(f"--broker must be a redis:// URL, got {url!r}")
    if not parts.hostname:
        raise UserInputError(f"--broker {url}: no host (e.g. redis://127.0.0.1:6379/0)")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise UserInputError(f"--broker {url}: the database must be a number (e.g. redis://127.0.0.1:{port or 6379}/0)")


def run_serve(args: argparse.Namespace) -> int:
    from sampleforge.serve.app import create_app
    from sampleforge.serve.logs import configure_logging
    from sampleforge.serve.server import serve
    from sampleforge.serve.service import Service

    if args.broker is not None:
        check_broker(args.broker)
    check_listen(args.host, args.port)  # before loading the models: a bad --host is said at once
    log_config = configure_logging(args.log_level)
    config = _config(
        args, host=args.host, port=args.port, workers=args.workers, token=read_token(args),
        max_queue=args.max_queue, ttl_hours=args.ttl_hours, max_count=args.max_count, max_steps=args.max_steps,
        max_duration=args.max_duration, max_body_bytes=args.max_body_bytes, cleanup_interval_s=args.cleanup_interval,
        max_connections=args.max_connections, header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
        keep_alive_s=args.keep_alive,
    )
    if config.token is None and not config.loopback:
        log.warning(f"serving on {config.host} with no token: anyone who can reach this port can queue and delete "
                    f"jobs (set --token-file or ${TOKEN_ENV})", extra={"event": "no_auth"})
    gens = [load_generator(m, args) for m in _models(args)]  # MODEL+VOCODER is called so: drums-v2+drums-vocoder-v1
    names = [g.name for g in gens]
    twice = [n for n in names if names.count(n) > 1]
    if twice:
        raise UserInputError(f"two models are both called {twice[0]!r}: put them in folders named apart")
    service = Service(config, {g.name: g for g in gens})
    service.start()  # before uvicorn: a storage already in use is a one-line error, not a lifespan trace
    try:  # the app's lifespan stops the service on shutdown, before uvicorn re-raises SIGTERM/SIGINT
        serve(create_app(service), config, log_config)
    finally:
        service.stop()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from sampleforge.serve.celery_app import run_worker as celery_worker
    from sampleforge.serve.logs import configure_logging

    check_broker(args.broker)
    configure_logging(args.log_level)
    config = _config(args)
    models = _models(args)
    if len(models) > 1:
        raise UserInputError("a worker runs one model: start one `sampleforge worker --model M` per model")
    return celery_worker(config, lambda: load_generator(models[0], args), pool=args.pool,
                         concurrency=args.concurrency)

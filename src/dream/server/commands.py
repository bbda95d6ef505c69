"""`dream serve` and `dream keys …`: the server's command-line entry points.

`register(subparsers)` adds both subcommands to the `dream` CLI (src/dream/cli.py calls
it). Nothing heavy is imported here at module import time: FastAPI, uvicorn, SQLAlchemy
and torch are imported inside the handlers, so `dream --help` stays instant. For
trying the commands on their own: ``python -m dream.server.commands serve --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

SERVE_EPILOG = """\
examples:
  dream serve                                    # pusht-96 on 127.0.0.1:8000, ledger in ./dream-ledger.sqlite3
  dream serve --spec pusht-96 --spec dreamdojo-2b-gr1 --host 0.0.0.0 --port 8080
  dream serve --db postgresql+psycopg://dream@db/dream --url-secret "$SECRET" --data-dir /shared/dream
                                                 # one of several replicas on one ledger
  dream serve --no-auth                          # local development only: no keys, no charges

clients:
  dream.Client(base_url="http://127.0.0.1:8000", api_key="dre_…")   # or DREAM_BASE_URL / DREAM_API_KEY
  the official dream-engine 0.5.0 client works unchanged against this server.

endpoints: /v1/models, /v1/rollouts, /v1/predict, /v1/predict/batch, /v1/specs, /v1/status,
/v1/billing/*, /v1/sessions (+ WebSocket), /v1/webhooks/secret, /healthz, /readyz, /metrics;
OpenAPI at /docs.
"""

KEYS_EPILOG = """\
examples:
  dream keys create --customer acme --credits 25     # prints the dre_… key once, on the last line
  dream keys list
  dream keys revoke key_0123abcd…                    # or the dre_… key, or its listed prefix
  dream keys credit --customer acme --credits 10
"""


def _db_help() -> str:
    return ("ledger database: an SQLAlchemy URL or a SQLite file path "
            "(default: DREAM_DB_URL, else sqlite:///dream-ledger.sqlite3 in the working directory)")


def db_url(value: str | None) -> str:
    """--db as given: an SQLAlchemy URL, or a plain path meaning a SQLite file."""
    from dream.server.settings import default_db_url

    if not value:
        return default_db_url()
    if "://" in value:
        return value
    from pathlib import Path

    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _weights(values: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        slug, sep, path = v.partition("=")
        if not sep or not slug or not path:
            raise SystemExit(f"error: --weights expects SLUG=PATH; got {v!r}")
        out[slug] = path
    return out


def register(subparsers: Any) -> None:
    """Add `serve` and `keys` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP server (needs the [server] extra)",
        description="Serve models over HTTP with API keys, prepaid credits, rate limits, dynamic batching "
        "and streaming sessions. Models load and warm up in the background; /readyz turns 200 when done.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", action="append", metavar="SLUG", default=None,
                   help="model to serve; repeat for several (default: pusht-96). The first is the default for /v1/predict")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--db", default=None, metavar="URL", help=_db_help())
    p.add_argument("--no-auth", action="store_true",
                   help="no API keys and no charges: LOCAL DEVELOPMENT ONLY (anyone who can connect runs rollouts)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--weights", action="append", metavar="SLUG=PATH", help="weights file/folder of a spec; repeatable")
    p.add_argument("--batch-window-ms", type=float, default=5.0,
                   help="dynamic batching window: concurrent rollouts with the same spec and parameters arriving "
                   "within it run as one engine batch (default 5; 0 turns batching off)")
    p.add_argument("--max-batch", type=int, default=16, help="rollouts fused into one engine call at most (default 16)")
    p.add_argument("--rate-limit", type=float, default=20.0, metavar="RPS",
                   help="requests per second per key, sustained (default 20; 0 = unlimited)")
    p.add_argument("--burst", type=int, default=40, help="requests a key may send at once (default 40)")
    p.add_argument("--max-concurrent", type=int, default=8,
                   help="rollouts in flight per key; more get 429 with Retry-After (default 8; 0 = unlimited)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="larger request bodies get 413 (default 64)")
    p.add_argument("--max-ws-message-mb", type=float, default=4.0, metavar="MB",
                   help="largest WebSocket message a session client may send; a larger one gets an error message, "
                   "one over twice this closes the socket (1009) before it is read (default 4)")
    _add_budget_args(p)
    p.add_argument("--lease-seconds", type=float, default=30.0, metavar="S",
                   help="replicas sharing a ledger: what a server holds (reservations, in-flight requests) is released "
                   "by any other once its heartbeat is this old (default 30)")
    p.add_argument("--webhook-allow", action="append", metavar="HOST|CIDR",
                   help="let async-rollout webhooks reach this host or network although it is not public "
                   "(loopback, private, link-local); repeatable")
    p.add_argument("--metrics-token", default=None, metavar="TOKEN",
                   help="require Authorization: Bearer TOKEN on /metrics, which shows charged totals "
                   "(default: DREAM_METRICS_TOKEN; unset: open)")
    p.add_argument("--data-dir", default=None,
                   help="where rollout videos are kept for video_url (default: a temp dir); replicas on one ledger "
                   "share one, or each has its own --public-url")
    p.add_argument("--public-url", default=None,
                   help="base URL clients reach this server at, for video_url/ws_url (default: from each request)")
    p.add_argument("--url-secret", default=None,
                   help="HMAC secret signing video URLs and webhooks; replicas on one ledger must share it, and one "
                   "whose secret differs from a live replica's refuses to start (default: random)")
    p.add_argument("--video-ttl", type=int, default=3600, help="seconds a video_url stays valid (default 3600)")
    p.add_argument("--no-preload", action="store_true",
                   help="do not load models at startup (ready at once; the first request loads its model)")
    p.add_argument("--warmup-hold-s", type=float, default=180.0, metavar="SECONDS",
                   help="hold requests that arrive while their model loads this long before a 503 "
                        "(default 180; 0: answer 503 at once)")
    p.add_argument("--payment-provider", default=None, metavar="stripe|MODULE:ATTR",
                   help="top-up provider (default: stripe when STRIPE_API_KEY is set, else top-ups are off)")
    p.add_argument("--stripe-api-key", default=None, help="Stripe secret key (default: STRIPE_API_KEY)")
    p.add_argument("--stripe-webhook-secret", default=None, help="Stripe webhook signing secret (default: STRIPE_WEBHOOK_SECRET)")
    p.add_argument("--checkout-success-url", default=None, help="where Stripe sends the customer after paying")
    p.add_argument("--checkout-cancel-url", default=None, help="where Stripe sends the customer after cancelling")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    p.set_defaults(func=cmd_serve)

    k = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys; add credits",
        description="Manage the server's API keys and prepaid credits directly in its ledger database. "
        "Keys are shown once; only their SHA-256 is stored.",
        epilog=KEYS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION")
    c = ks.add_parser("create", help="create a key (and its customer if new); prints the key on the last line")
    c.add_argument("--customer", required=True, help="customer name (created if new; keys of one customer share credits)")
    c.add_argument("--credits", type=float, default=0.0, metavar="USD", help="credits to add, in US dollars (default 0)")
    c.add_argument("--rate-limit", type=float, default=None, metavar="RPS",
                   help="this key's requests per second (default: the server's --rate-limit)")
    c.add_argument("--burst", type=int, default=None, help="this key's burst (default: the server's --burst)")
    c.add_argument("--max-concurrent", type=int, default=None,
                   help="this key's rollouts in flight (default: the server's --max-concurrent)")
    c.add_argument("--db", default=None, metavar="URL", help=_db_help())
    c.set_defaults(func=cmd_keys_create)
    ls = ks.add_parser("list", help="list keys with their customers and balances (no secrets)")
    ls.add_argument("--db", default=None, metavar="URL", help=_db_help())
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_keys_list)
    r = ks.add_parser("revoke", help="revoke a key: its requests get 403 from now on")
    r.add_argument("key", help="key id (key_…), its prefix as listed (dre_xxxxxxxx), or - to read the full dre_… "
                   "key from stdin (keeps it out of the shell history and the process list)")
    r.add_argument("--db", default=None, metavar="URL", help=_db_help())
    r.set_defaults(func=cmd_keys_revoke)
    cr = ks.add_parser("credit", help="add credits to an existing customer")
    cr.add_argument("--customer", required=True, help="customer name")
    cr.add_argument("--credits", type=float, required=True, metavar="USD", help="US dollars to add")
    cr.add_argument("--db", default=None, metavar="URL", help=_db_help())
    cr.set_defaults(func=cmd_keys_credit)
    k.set_defaults(func=lambda args: (k.print_help(), 2)[1])


# --------------------------------------------------------------------------- serve


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    """Per-request budgets: what one customer's request may cost the server in memory."""
    p.add_argument("--max-request-frames", type=int, default=8192, metavar="N",
                   help="frames one request may produce, K x (T + 1) over its rollouts; more get 413 (default 8192)")
    p.add_argument("--max-frame-pixels", type=int, default=None, metavar="N",
                   help="start-frame pixels (8-bit RGB; 16-bit or alpha frames get fewer), checked from the header "
                   "before decoding (default: 36 x the spec's H x W, at least 1920 x 1080)")
    p.add_argument("--max-concurrent-decodes", type=int, default=2, metavar="N",
                   help="start frames decoded at once, server-wide (default 2)")
    p.add_argument("--max-request-seconds", type=float, default=600.0, metavar="S",
                   help="a streamed request still running after this long is stopped (413) and refunded (default 600)")
    p.add_argument("--stream-chunk-frames", type=int, default=16, metavar="N",
                   help="long rollouts run and encode about N frames at a time, other customers' work between "
                   "chunks (default 16)")


def _apply_budget_args(settings: Any, args: argparse.Namespace) -> None:
    settings.max_request_frames = args.max_request_frames
    settings.max_frame_pixels = args.max_frame_pixels
    settings.max_concurrent_decodes = args.max_concurrent_decodes
    settings.max_request_wall_s = args.max_request_seconds
    settings.lease_s = args.lease_seconds
    settings.webhook_allow = list(args.webhook_allow or [])
    settings.metrics_token = args.metrics_token or os.environ.get("DREAM_METRICS_TOKEN") or None
    settings.stream_chunk_frames = args.stream_chunk_frames


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import logging.config

    from dream.errors import DreamError
    from dream.server.logs import log_config
    from dream.server.settings import MIB, Settings

    settings = Settings(
        specs=args.spec or Settings().specs,
        device=args.device,
        threads=args.threads,
        weights=_weights(args.weights),
        db_url=db_url(args.db),
        auth=not args.no_auth,
        rate_limit_rps=args.rate_limit,
        rate_limit_burst=args.burst,
        max_concurrent_rollouts=args.max_concurrent,
        max_body_bytes=int(args.max_body_mb * MIB),
        max_ws_message_bytes=int(args.max_ws_message_mb * MIB),
        batch_window_ms=args.batch_window_ms,
        max_fused_batch=args.max_batch,
        data_dir=args.data_dir,
        public_base_url=args.public_url,
        url_secret=args.url_secret,
        video_url_ttl_s=args.video_ttl,
        load_on_startup=not args.no_preload,
        warmup_hold_s=args.warmup_hold_s,
        payment_provider=args.payment_provider,
        stripe_api_key=args.stripe_api_key,
        stripe_webhook_secret=args.stripe_webhook_secret,
    )
    _apply_budget_args(settings, args)
    if args.checkout_success_url:
        settings.checkout_success_url = args.checkout_success_url
    if args.checkout_cancel_url:
        settings.checkout_cancel_url = args.checkout_cancel_url
    from dream.engine import specs as spec_registry

    for slug in settings.specs:
        try:
            spec_registry.get(slug)
        except KeyError as exc:
            print(f"error: --spec: {exc.args[0]}", file=sys.stderr)
            return 2
    try:
        import uvicorn

        from dream.server.app import create_app
    except ImportError as exc:
        print(f"error: dream serve needs the [server] extra: pip install 'dream-engine[server]' ({exc})", file=sys.stderr)
        return 1
    level = args.log_level.upper()
    config = log_config(level)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    log = logging.getLogger("dream.server")
    try:
        app = create_app(settings)
    except (ValueError, KeyError, DreamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.no_auth:
        log.warning("=" * 72)
        log.warning("--no-auth: NO API KEYS, NO CHARGES. Local development only; never expose this port.")
        log.warning("=" * 72)
    log.info("serving %s on http://%s:%d (ledger %s)", ", ".join(settings.specs), args.host, args.port,
             _redact(settings.db_url))
    uvicorn.run(app, host=args.host, port=args.port, log_config=config, access_log=True,
                **ws_limits(settings.max_ws_message_bytes))
    return 0


def ws_limits(max_message_bytes: int) -> dict[str, int]:
    """uvicorn's WebSocket settings for a server that takes messages up to `max_message_bytes`.

    The protocol refuses (close 1009) what is over twice the limit before reading it in;
    between the two the app answers with an error message. Two received messages are
    queued at most per socket (the app reads one at a time), so a client sending fast
    holds little memory: the rest waits in its own TCP buffers.
    """
    return {"ws_max_size": 2 * max_message_bytes, "ws_max_queue": 2}


def _redact(url: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# --------------------------------------------------------------------------- keys


def _ledger(args: argparse.Namespace) -> Any:
    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    return Ledger(Database(db_url(args.db)))


def _mils(usd: float) -> int:
    import math

    from dream.server.services.ledger import usd_to_mils

    if not math.isfinite(usd) or usd < 0:
        raise SystemExit(f"error: --credits must be a non-negative number of US dollars; got {usd}")
    return usd_to_mils(usd)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from dream.server.services.ledger import KeyLimits

    mils = _mils(args.credits)
    limits = KeyLimits(args.rate_limit, args.burst, args.max_concurrent)
    issued = _ledger(args).create_key(args.customer, credits_mils=mils, limits=None if limits.empty else limits)
    print(f"customer: {issued.customer_name} ({issued.customer_id})")
    print(f"key id:   {issued.key_id}")
    print(f"balance:  ${issued.balance_mils / 10_000:.4f} ({issued.balance_mils} mils)")
    print("the key below is shown once; store it now (only its SHA-256 is kept):")
    print(issued.key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    import datetime as dt

    rows = _ledger(args).list_keys()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0

    def when(ts: float | None) -> str:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else ""

    table = [("KEY ID", "PREFIX", "CUSTOMER", "BALANCE USD", "CREATED (UTC)", "REVOKED (UTC)")]
    for r in rows:
        table.append((r["id"], r["prefix"] + "…", r["customer"], f"{r['balance_mils'] / 10_000:.4f}",
                      when(r["created"]), when(r["revoked"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    ident = args.key
    if ident == "-":
        ident = sys.stdin.readline().strip()
        if not ident:
            print("error: keys revoke -: no key on stdin", file=sys.stderr)
            return 2
    try:
        row = _ledger(args).revoke_key(ident)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"revoked {row['id']} ({row['prefix']}…)")
    return 0


def cmd_keys_credit(args: argparse.Namespace) -> int:
    from dream.server.services.db import new_id

    ledger = _ledger(args)
    mils = _mils(args.credits)
    if mils <= 0:
        print("error: --credits must be positive", file=sys.stderr)
        return 2
    customer_id = ledger.customer_id_by_name(args.customer)
    if customer_id is None:
        print(f"error: no customer named {args.customer!r}; create one with `dream keys create`", file=sys.stderr)
        return 1
    after = ledger.credit(customer_id, mils, txn_id=new_id("grant"), detail=f"credit · {mils / 10_000:.4f} USD via dream keys credit")
    print(f"{args.customer}: balance ${after / 10_000:.4f} ({after} mils)")
    return 0


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dream.server.commands serve|keys …`` (the same as ``dream serve|keys``)."""
    parser = argparse.ArgumentParser(prog="dream", description="dream-engine server commands")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

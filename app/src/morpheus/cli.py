"""The ``morpheus`` command: run the web service or a worker, migrate, manage access.

Exit codes: 0 success, 1 the command failed (message on stderr), 2 bad usage or invalid
settings (one line per bad setting, naming its environment variable).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import OperationalError

from morpheus import __version__
from morpheus.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

GUNICORN_CONFIG = "python:morpheus.gunicorn_conf"


class CommandError(Exception):
    """A failure to report as one line on stderr (no traceback)."""


def _err(message: str) -> None:
    print(f"morpheus: {message}", file=sys.stderr)


# --- commands ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Replace this process with Gunicorn (so signals reach it directly)."""
    if args.bind:
        os.environ["MORPHEUS_BIND"] = args.bind
    if args.workers is not None:
        if args.workers < 1:
            raise CommandError("--workers must be at least 1")
        os.environ["MORPHEUS_WEB_CONCURRENCY"] = str(args.workers)
    argv = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell
    return EXIT_FAILED  # not reached


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from morpheus.worker.runtime import main as worker_main

    return worker_main(settings)


def _describe_revision(database_url: str) -> str:
    from morpheus.db import schema

    current = schema.current_revision(database_url)
    head = schema.head_revision()
    if current is None:
        return f"database revision: none (empty database; head is {head})"
    marker = " (head)" if current == head else f" (head is {head})"
    return f"database revision: {current}{marker}"


def _migrate(direction: str, settings: Settings, revision: str) -> int:
    from alembic.util import CommandError as AlembicCommandError

    from morpheus.db import schema

    action = schema.upgrade if direction == "upgrade" else schema.downgrade
    try:
        action(settings.database_url, revision)
    except AlembicCommandError as exc:
        raise CommandError(str(exc)) from None
    print(_describe_revision(settings.database_url))
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    return _migrate("upgrade", settings, args.revision)


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    return _migrate("downgrade", settings, args.revision)


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    print(_describe_revision(settings.database_url))
    return EXIT_OK


def cmd_db_pending(args: argparse.Namespace, settings: Settings) -> int:
    """One line per revision ``db upgrade`` would apply, oldest first; none at head.

    With ``--json``, one JSON document for programs (the migrations role reads it):
    ``{"pending": [{"revision": "0003", "phase": "expand", "description": "..."}, ...]}``,
    oldest first; ``phase`` is "expand", "contract", or null for a revision without a
    valid marker (treat it as a contract step).
    """
    import json

    from alembic.util import CommandError as AlembicCommandError

    from morpheus.db import schema

    try:
        migrations = schema.pending_migrations(settings.database_url, args.revision)
    except AlembicCommandError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps({"pending": [migration.as_dict() for migration in migrations]}))
        return EXIT_OK
    for migration in migrations:
        print(migration.revision)
    return EXIT_OK


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read password file {password_file}: {exc}") from None
        password = text.rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("the passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password given")
    return password


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    from morpheus.db import users
    from morpheus.db.session import session_scope

    username = args.username.strip()
    if args.if_missing:
        # An existing user is left as it is: no password is asked for, nothing changes.
        with session_scope(settings) as session:
            exists = users.find_user(session, username) is not None
        if exists:
            print(f"user {username} exists")
            return EXIT_OK
    password = _read_password(args.password_file)
    with session_scope(settings) as session:
        try:
            user = users.create_user(session, username, password)
        except users.UsernameTaken as exc:
            if not args.if_missing:  # else: created meanwhile by someone else
                raise CommandError(str(exc)) from None
            print(f"user {username} exists")
            return EXIT_OK
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(f"created user {user.username} ({user.id})")
    return EXIT_OK


def cmd_create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from morpheus.db import api_keys
    from morpheus.db.session import session_scope

    with session_scope(settings) as session:
        try:
            created = api_keys.create_api_key(session, args.name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(
            f"created API key {created.api_key.name!r} (id {created.api_key.id}, "
            f"prefix {created.api_key.prefix}); it is shown only this once:",
            file=sys.stderr,
        )
        print(created.key)
    return EXIT_OK


def cmd_revoke_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from morpheus.db import api_keys
    from morpheus.db.session import session_scope

    with session_scope(settings) as session:
        try:
            revoked = api_keys.revoke_api_keys_named(session, args.name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    print(f"revoked {len(revoked)} API key(s) named {args.name.strip()}")
    return EXIT_OK


def cmd_delete_comic(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a finished comic: its files, then, only if that worked, its rows."""
    import uuid

    from botocore.exceptions import BotoCoreError, ClientError

    from morpheus.db import comics
    from morpheus.db.session import session_scope
    from morpheus.storage import StorageError, comic_prefix, get_storage

    try:
        comic_id = uuid.UUID(args.comic_id)
    except ValueError:
        raise CommandError(f"{args.comic_id!r} is not a comic id (a UUID)") from None

    def delete_files(comic_id: uuid.UUID) -> int:
        try:
            return get_storage(settings).delete_prefix(comic_prefix(comic_id))
        except (StorageError, OSError, BotoCoreError, ClientError) as exc:
            raise CommandError(
                f"cannot delete the files of comic {comic_id} ({exc}); the comic is kept"
            ) from None

    with session_scope(settings) as session:
        try:
            files = comics.delete_comic(session, comic_id, before_delete=delete_files)
        except comics.ComicNotFound as exc:
            raise CommandError(str(exc)) from None
        except comics.InvalidTransition as exc:
            raise CommandError(
                f"comic {comic_id} is {exc.status}: cancel it first, then delete it"
            ) from None
    print(f"deleted comic {comic_id} ({files} files)")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """One reconciler pass: queue again what PostgreSQL says must run and Redis lost."""
    import asyncio

    from redis.exceptions import RedisError

    from morpheus.logging import configure_logging
    from morpheus.worker.reconciler import reconcile_once

    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    configure_logging(settings.log_level)  # a JSON line per comic queued again, on stderr
    try:
        report = asyncio.run(reconcile_once(settings, batch_size=args.batch_size))
    except RedisError as exc:
        raise CommandError(f"Redis is not reachable: {exc}") from None
    except TimeoutError:
        raise CommandError("the pass took too long; what it did is kept, run it again") from None
    if report.locked:
        raise CommandError("another process is reconciling (it holds the lock); try again soon")
    more = "; more remain, run it again" if report.more else ""
    print(
        f"reconciled: {len(report.enqueued)} enqueued, {len(report.retried)} retried, "
        f"{len(report.failures_recorded)} failure(s) recorded, {report.live} with a job "
        f"left alone{more}"
    )
    return EXIT_OK


def cmd_sessions_list(args: argparse.Namespace, settings: Settings) -> int:
    """One line per live dashboard session, the most recently used first."""
    from morpheus.services.sessions import SessionsUnavailable, list_sessions

    try:
        records = list_sessions(settings)
    except SessionsUnavailable as exc:
        raise CommandError(f"Redis is not reachable: {exc}") from None
    rows = [("ID", "USER", "CREATED", "LAST SEEN", "ADDRESS")]
    for record in records:
        rows.append(
            (
                record.handle,
                record.username,
                record.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                record.last_seen.strftime("%Y-%m-%dT%H:%M:%SZ"),
                record.address,
            )
        )
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def cmd_sessions_end(args: argparse.Namespace, settings: Settings) -> int:
    """End one session (by the id ``sessions list`` shows) or every session of a user."""
    if (args.session_id is None) == (args.user is None):
        _err("sessions end: give a session ID or --user NAME, one of them")
        return EXIT_USAGE
    from morpheus.services.sessions import SessionsUnavailable, end_session, end_user_sessions

    try:
        if args.user is not None:
            username = args.user.strip()
            print(f"ended {end_user_sessions(settings, username)} session(s) of {username}")
            return EXIT_OK
        ended = end_session(settings, args.session_id)
    except SessionsUnavailable as exc:
        raise CommandError(f"Redis is not reachable: {exc}") from None
    if not ended:
        raise CommandError(f"no session {args.session_id} (see: morpheus sessions list)")
    print(f"ended session {args.session_id}")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morpheus",
        description="Morpheus turns novels into comics. Settings come from MORPHEUS_* "
        "environment variables and files in MORPHEUS_SECRETS_DIR.",
    )
    parser.add_argument("--version", action="version", version=f"morpheus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the web service (Gunicorn + Uvicorn workers)")
    serve.add_argument("--bind", help="address to listen on (default MORPHEUS_BIND or :8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default from cores)")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run a queue worker until SIGTERM")
    worker.set_defaults(handler=cmd_worker)

    db = commands.add_parser("db", help="database schema migrations")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate up (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="migrate down to REV ('base': empty)")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(handler=cmd_db_downgrade)
    current = db_commands.add_parser("current", help="show the database's revision")
    current.set_defaults(handler=cmd_db_current)
    pending = db_commands.add_parser(
        "pending", help="list the revisions 'upgrade' would apply, oldest first"
    )
    pending.add_argument("revision", nargs="?", default="head", metavar="REV")
    pending.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document: each pending revision with its phase "
        "(expand or contract) and description",
    )
    pending.set_defaults(handler=cmd_db_pending)

    user = commands.add_parser("create-user", help="create a dashboard user")
    user.add_argument("username", metavar="USERNAME")
    user.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file (default: prompt, or one line of stdin)",
    )
    user.add_argument(
        "--if-missing",
        action="store_true",
        help="an existing USERNAME is no error: leave it as it is and exit 0",
    )
    user.set_defaults(handler=cmd_create_user)

    key = commands.add_parser("create-api-key", help="create an API key and print it once")
    key.add_argument("name", metavar="NAME")
    key.set_defaults(handler=cmd_create_api_key)

    revoke = commands.add_parser("revoke-api-key", help="revoke every active API key named NAME")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=cmd_revoke_api_key)

    delete = commands.add_parser(
        "delete-comic", help="delete a finished comic: its pages, files and record"
    )
    delete.add_argument("comic_id", metavar="ID")
    delete.set_defaults(handler=cmd_delete_comic)

    reconcile = commands.add_parser(
        "reconcile",
        help="queue again the comics PostgreSQL says must run and Redis has no job for",
    )
    reconcile.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="queue at most N comics (default MORPHEUS_RECONCILER_BATCH_SIZE)",
    )
    reconcile.set_defaults(handler=cmd_reconcile)

    sessions = commands.add_parser("sessions", help="list or end dashboard sessions")
    sessions_commands = sessions.add_subparsers(
        dest="sessions_command", metavar="ACTION", required=True
    )
    sessions_list = sessions_commands.add_parser(
        "list", help="list live sessions: id, user, created, last seen, client address"
    )
    sessions_list.set_defaults(handler=cmd_sessions_list)
    sessions_end = sessions_commands.add_parser(
        "end", help="end a session (its ID from 'sessions list') or every session of a user"
    )
    sessions_end.add_argument("session_id", nargs="?", metavar="ID")
    sessions_end.add_argument("--user", metavar="NAME", help="end every session of this user")
    sessions_end.set_defaults(handler=cmd_sessions_end)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in exc.lines:
            _err(f"invalid setting: {line}")
        return EXIT_USAGE
    if args.command == "db":
        # Alembic reports each migration it runs; nothing else is chatty here (and
        # `db current` and `db pending` print only their answer).
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        if args.db_command in ("upgrade", "downgrade"):
            logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except CommandError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILED
    except OperationalError as exc:
        _err(f"error: the database is not reachable: {_unreachable_reason(exc)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _unreachable_reason(exc: OperationalError) -> str:
    """psycopg's reason on one line: its first, or when the URL named several hosts, the
    first line of each host's failure in the order tried (psycopg names hosts and ports,
    never the password)."""
    lines = str(exc.orig).strip().splitlines() if exc.orig else []
    if not lines:
        return "connection failed"
    attempts = [line[2:] for line in lines if line.startswith("- host: ")]
    if len(attempts) < 2:
        return lines[0]
    return f"tried {len(attempts)} hosts in turn: {'; '.join(attempts)}"


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

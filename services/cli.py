"""`party`: run, migrate and inspect the services.

party serve roster            # one service (HTTP, relay, consumer) on its port
party serve all               # the four services, one process each
party migrate all             # apply every schema's migrations (also done at start)
party verify all [--checkpoints FILE]   # chains, signatures, witnesses, from PostgreSQL
party rebuild all             # fold each log again into its read models, compare with live
party token --role auditor    # a token signed with PARTY_AUTH_SECRET (or, when that is not
                              # set, the secret `make up` keeps in .run/credentials.json)
party keys list               # the signing keys (PARTY_KEYS_DIR); init, rotate, revoke
                              # (--per-service-dirs: also DIR/{service}/ for each service)
party contracts [--check]     # regenerate (or check) JSON Schema, AsyncAPI and OpenAPI
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from runtime.auth import ROLES, Role
from runtime.eventstore import verify_chain
from runtime.logs import configure_logging
from runtime.service import (
    UnsafeSettings,
    check_safe_to_start,
    connect_database,
    migrate_service,
    rebuild_read_models,
    token_authority,
)
from runtime.settings import Settings
from runtime.signing import (
    KeyFileError,
    ensure_keys,
    load_keyring,
    private_key_path,
    revoke_key,
    rotate_key,
)
from runtime.witness import (
    WitnessedCheckpoint,
    as_fork,
    check_log,
    load_checkpoint_file,
    witnessed_checkpoints,
)
from services.registry import SERVICES, resolve


def _serve(names: list[str]) -> int:
    definitions = resolve(names)
    settings = Settings()
    try:
        check_safe_to_start(settings)  # start_service checks again; here it is one sentence
    except UnsafeSettings as error:
        print(f"party serve: {error}", file=sys.stderr)
        return 2
    if len(definitions) > 1:
        return _serve_many([d.name for d in definitions])
    import uvicorn

    from runtime.http import create_app
    from runtime.http.server import uvicorn_options

    definition = definitions[0]
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(definition, settings),
        host=settings.http_host,
        port=settings.port_for(definition.name),
        # httptools with header and body timeouts, keep-alive and a connection limit
        **uvicorn_options(settings),
    )
    return 0


def _serve_many(names: list[str]) -> int:
    """One process per service, as in production. Ctrl-C or SIGTERM stops them all, and so does
    any one of them ending: a stack with a service missing is not left half running."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", name], env=os.environ.copy()
        )
        for name in names
    ]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    if not stopping:
        ended = next(
            name for name, child in zip(names, children, strict=True) if child.poll() is not None
        )
        print(f"party: {ended} stopped; stopping the others", file=sys.stderr)
        stop()
    codes = [child.wait() for child in children]
    return 0 if stopping and all(code in (0, -signal.SIGTERM) for code in codes) else 1


async def _migrate(names: list[str]) -> int:
    settings = Settings()
    pool = await connect_database(settings)
    try:
        for definition in resolve(names):
            schema = settings.schema_for(definition.name)
            applied = await migrate_service(pool, definition, schema)
            print(
                f"{definition.name}: schema {schema}: "
                f"{', '.join(applied) if applied else 'up to date'}"
            )
    finally:
        await pool.close()
    return 0


async def _verify(
    names: list[str],
    checkpoints_file: str | None = None,
    *,
    settings: Settings | None = None,
    schemas: dict[str, str] | None = None,
) -> int:
    """Each log's chain and signatures, then the log against every checkpoint of it the other
    services recorded in their logs (read from their schemas) and, given one, an exported file.
    `schemas` names each service's schema when they are not the settings' (tests)."""
    settings = settings or Settings()

    def schema_of(service: str) -> str:
        return (schemas or {}).get(service) or settings.schema_for(service)

    exported: list[WitnessedCheckpoint] = []
    if checkpoints_file:
        try:
            exported = load_checkpoint_file(Path(checkpoints_file))
        except ValueError as error:
            print(f"party verify: {error}", file=sys.stderr)
            return 2
    pool = await connect_database(settings)
    broken = 0
    try:
        keyring = load_keyring(Path(settings.keys_dir))
        for definition in resolve(names):
            name = definition.name
            schema = schema_of(name)
            report = await verify_chain(pool, schema, keyring=keyring, source=name)
            if report.intact:
                print(
                    f"{name}: intact, {report.events_checked} events checked, "
                    f"signed through position {report.signed_through}"
                )
            else:
                broken += 1
                print(
                    f"{name}: BROKEN at position {report.first_broken_position}: "
                    f"{report.reason} ({report.events_checked} events verified before it)"
                )
            found: list[WitnessedCheckpoint] = []
            witnesses: list[str] = []
            for other in SERVICES:
                other_schema = schema_of(other)
                if other == name or other_schema == schema:
                    continue
                if await pool.fetchval("SELECT to_regclass($1)::text", f'"{other_schema}".events'):
                    found += await witnessed_checkpoints(pool, other_schema, other, of=name)
                    witnesses.append(other)
            mine = [e for e in exported if e.checkpoint.service == name]
            if checkpoints_file:
                witnesses.append(f"the file {Path(checkpoints_file).name}")
            checked = await check_log(
                pool, schema, name, [*found, *mine], keyring, witnesses=witnesses
            )
            if checked.disagreement is None:
                print(
                    f"  witnesses ({', '.join(witnesses) or 'none'}): "
                    f"{checked.checkpoints_checked} checkpoints agree, through size "
                    f"{checked.agreed_through}"
                )
                continue
            if report.intact:
                broken += 1
            disagreement = as_fork(checked.disagreement, report.intact, name)
            where = (
                f"at position {disagreement.position}"
                if disagreement.position is not None
                else "(a checkpoint that is not the service's)"
            )
            print(f"  witnesses DISAGREE {where} ({disagreement.kind}): {disagreement.reason}")
    finally:
        await pool.close()
    return 1 if broken else 0


async def _rebuild(names: list[str]) -> int:
    settings = Settings()
    pool = await connect_database(settings)
    differing = 0
    try:
        for definition in resolve(names):
            report = await rebuild_read_models(definition, settings, pool)
            if report.equal:
                print(
                    f"{definition.name}: {report.events_read} events folded again; "
                    f"{len(report.tables)} read-model tables equal to the live ones"
                )
            else:
                differing += 1
                print(
                    f"{definition.name}: {report.events_read} events folded again; "
                    f"DIFFERENT from the live ones: {', '.join(report.differing)}"
                )
                for example in report.examples:
                    print(f"  {example}")
            if report.skipped:
                print(
                    f"  {len(report.skipped)} event(s) skipped, their projection failing "
                    f"(GET /v1/audit/failed-events): {', '.join(report.skipped[:5])}"
                )
    finally:
        await pool.close()
    return 1 if differing else 0


#: The option each scoped role needs: a token of that role without it opens nothing.
SCOPE_OPTIONS = {
    "branch_secretary": ("branch", "--branch"),
    "committee_member": ("branch", "--branch"),
    "school_admin": ("school", "--school"),
    "member": ("member", "--member"),
}


def credentials_file() -> Path:
    """Where `make up` keeps its credentials (`PARTY_RUN_DIR`, default `.run`)."""
    return Path(os.environ.get("PARTY_RUN_DIR") or ".run") / "credentials.json"


def _token_settings() -> Settings:
    """PARTY_AUTH_SECRET when set; otherwise the secret of the stack `make up` started here,
    when its credentials file holds one; otherwise the settings' default (development)."""
    if os.environ.get("PARTY_AUTH_SECRET"):
        return Settings()
    import json

    path = credentials_file()
    try:
        secret = json.loads(path.read_text()).get("auth_secret") if path.exists() else None
    except (OSError, ValueError, AttributeError):
        secret = None
    return Settings(auth_secret=secret) if isinstance(secret, str) and secret else Settings()


def _token(args: argparse.Namespace) -> int:
    if args.ttl_hours <= 0:
        print(
            f"party token: --ttl-hours must be more than 0 (not {args.ttl_hours:g}): such a "
            "token has expired before it is used",
            file=sys.stderr,
        )
        return 2
    needed = SCOPE_OPTIONS.get(args.role)
    if needed is not None and not getattr(args, needed[0]):
        print(
            f"party token: a {args.role} token needs its scope: give {needed[1]} "
            f"(a token without it opens nothing)",
            file=sys.stderr,
        )
        return 2
    tokens = token_authority(_token_settings())
    try:
        token = tokens.issue(
            args.subject or args.role,
            cast(Role, args.role),
            branches=args.branch,
            schools=args.school,
            member_id=args.member,
            ttl=timedelta(hours=args.ttl_hours),
        )
    except ValueError as error:
        print(f"party token: {error} (PARTY_TOKEN_MAX_LIFETIME_HOURS)", file=sys.stderr)
        return 2
    print(token)
    return 0


def _keys(args: argparse.Namespace) -> int:
    keys_dir = Path(args.keys_dir or Settings().keys_dir)
    try:
        if args.action == "init":
            for service, key_id in ensure_keys(keys_dir, args.services or list(SERVICES)).items():
                print(f"{service}: key {key_id} in {keys_dir}")
            _personal_data_key(keys_dir)
        elif args.action == "rotate":
            for service in args.services:
                old, new = rotate_key(keys_dir, service)
                print(
                    f"{service}: new key {new} (the old {old} is kept, retired); restart "
                    f"{service}: it records the rotation in its log and signs with the new key"
                )
        elif args.action == "revoke":
            if len(args.services) != 2 or args.after is None:
                print("party keys revoke SERVICE KEY_ID --after POSITION", file=sys.stderr)
                return 2
            service, key_id = args.services
            revoke_key(keys_dir, service, key_id, args.after)
            print(f"{service}: key {key_id} verifies nothing after position {args.after}")
        else:
            ring = load_keyring(keys_dir)
            for service in ring.services():
                for key in ring.keys[service].values():
                    revoked = (
                        f", revoked after position {key.revoked_after}"
                        if key.revoked_after is not None
                        else ""
                    )
                    print(f"{service}: {key.key_id}{revoked}")
    except KeyFileError as error:
        print(f"party keys: {error}", file=sys.stderr)
        return 2
    if args.per_service_dirs and args.action != "list":
        _per_service_dirs(keys_dir)
    return 0


def _personal_data_key(keys_dir: Path) -> None:
    """The university's personal-data key (runtime/personal.py), made once: the roster's."""
    from runtime.personal import KEY_FILE, load_master_key

    existed = (keys_dir / KEY_FILE).exists()
    load_master_key(keys_dir, create=True)
    print(f"roster: personal-data key in {keys_dir / KEY_FILE}{' (kept)' if existed else ''}")


def _per_service_dirs(keys_dir: Path) -> None:
    """`{keys_dir}/{service}/` for each service: its own private key and every service's public
    keys file, and nothing else — the one key directory that service is given (compose mounts
    one volume per service). Files are replaced whole, so a running service never reads half
    of one."""
    public = sorted(keys_dir.glob("*.keys.json"))
    for service in SERVICES:
        target = keys_dir / service
        target.mkdir(mode=0o700, exist_ok=True)
        private = private_key_path(keys_dir, service)
        files = [(private, 0o600)] if private.exists() else []
        personal = keys_dir / "personal-data.key"
        if service == "roster" and personal.exists():
            files.append((personal, 0o600))  # it seals and erases personal data; no other
        for source, mode in [*files, *((path, 0o644) for path in public)]:
            temporary = target / f".{source.name}.new"
            temporary.unlink(missing_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(source.read_bytes())
            os.replace(temporary, target / source.name)
        print(f"{service}: its private key and {len(public)} public key files in {target}")


async def _provision(
    user_prefix: str,
    passwords: dict[str, str] | None,
    keys_dir: str | None = None,
    *,
    keys: bool = True,
    per_service_dirs: bool = False,
    campus_systems: list[str] | None = None,
    disable_default_user: bool = False,
    revoke_public_connect: bool = False,
) -> dict[str, Any]:
    from services.provision import (
        disable_default_user as disable_default,
    )
    from services.provision import (
        new_credentials,
        other_databases_open_to,
        provision_campus_systems,
        provision_database,
        provision_redis,
    )
    from services.provision import (
        revoke_public_connect as revoke_connect,
    )

    settings = Settings()
    if keys:
        directory = Path(keys_dir or settings.keys_dir)
        for service, key_id in ensure_keys(directory, SERVICES).items():
            print(f"{service}: signing key {key_id}")
        _personal_data_key(directory)
        if per_service_dirs:
            _per_service_dirs(directory)
    definitions = resolve(["all"])
    pool = await connect_database(settings)
    try:
        for definition in definitions:
            await migrate_service(pool, definition, settings.schema_for(definition.name))
    finally:
        await pool.close()
    credentials = new_credentials(definitions, user_prefix, passwords)
    schemas = {d.name: settings.schema_for(d.name) for d in definitions}
    databases = await provision_database(settings.database_url, definitions, credentials, schemas)
    redises = await provision_redis(
        settings.redis_url, settings.stream_prefix, definitions, credentials
    )
    for name in databases:
        print(f"{name}: PostgreSQL role and Redis user {credentials[name].user}")
    if revoke_public_connect:
        revoked = await revoke_connect(settings.database_url)
        print(f"PUBLIC's CONNECT revoked on {', '.join(revoked) or 'no other database'}")
    roles = [c.user for c in credentials.values()]
    still_open = sorted(
        {
            db
            for dbs in (await other_databases_open_to(settings.database_url, roles)).values()
            for db in dbs
        }
    )
    if still_open:
        print(
            f"note: the service roles may still connect to {', '.join(still_open)} through "
            "PUBLIC's CONNECT; on a shared server the DBA revokes it "
            "(REVOKE CONNECT ON DATABASE … FROM PUBLIC) or pg_hba.conf admits each role to "
            "its own database only; on a server of its own: --revoke-public-connect"
        )
    result: dict[str, Any] = {
        name: {"database_url": databases[name], "redis_url": redises[name]} for name in databases
    }
    if campus_systems:
        made = await provision_campus_systems(
            settings.redis_url, settings.stream_prefix, user_prefix, campus_systems
        )
        for name, entry in made.items():
            print(f"campus system {name}: Redis user {entry['user']} (reads the streams only)")
        result["campus_systems"] = made
    if disable_default_user:
        admin = await disable_default(settings.redis_url, f"{user_prefix}_admin")
        if admin is not None:
            print(
                f"Redis: administrator user {admin['user']} made (its URL is in the "
                "credentials file: use it as the administrator from now on)"
            )
            result["redis_admin"] = admin
        print("Redis: the default user is off")
    return result


def _provision_command(args: argparse.Namespace) -> int:
    from services.provision import CAMPUS_NAME, passwords_from_environment

    passwords = None
    if args.passwords_from_env:
        try:
            passwords = passwords_from_environment(list(SERVICES), os.environ)
        except ValueError as error:
            print(f"party provision: {error}", file=sys.stderr)
            return 2
    for name in args.campus_system:
        if not CAMPUS_NAME.match(name):
            print(
                f"party provision: --campus-system {name!r}: a name is lower-case letters, "
                "digits and '-' (up to 40)",
                file=sys.stderr,
            )
            return 2
    credentials = _provision(
        args.user_prefix,
        passwords,
        args.keys_dir,
        keys=not args.no_keys,
        per_service_dirs=args.per_service_dirs,
        campus_systems=args.campus_system,
        disable_default_user=args.disable_default_user,
        revoke_public_connect=args.revoke_public_connect,
    )
    return _write_credentials(args.out, asyncio.run(credentials))


def _write_credentials(out: str, credentials: dict[str, Any]) -> int:
    """Write the credentials (mode 0600), keeping what the file held that this run did not
    make: the stack's own secrets, campus systems provisioned before."""
    import json

    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    kept: dict[str, Any] = {}
    if target.exists():
        try:
            kept = json.loads(target.read_text())
        except ValueError:
            kept = {}
    campus = {**kept.get("campus_systems", {}), **credentials.get("campus_systems", {})}
    merged = {**kept, **credentials, **({"campus_systems": campus} if campus else {})}
    temporary = target.with_name(f".{target.name}.new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(merged, indent=2))
    os.replace(temporary, target)
    print(f"credentials written to {target}")
    return 0


def _contracts(check: bool) -> int:
    from services.documents import stale_documents, write_documents

    if check:
        stale = stale_documents()
        for name in stale:
            print(f"stale: {name}")
        return 1 if stale else 0
    for name in write_documents():
        print(f"wrote {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="party", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run services")
    serve.add_argument("services", nargs="+", help="roster, activities, scoring, notify or all")
    mig = commands.add_parser("migrate", help="apply migrations")
    mig.add_argument("services", nargs="+")
    ver = commands.add_parser("verify", help="verify hash chains, signatures and witnesses")
    ver.add_argument("services", nargs="*", default=["all"])
    ver.add_argument(
        "--checkpoints", metavar="FILE", help="also compare with a `partyctl checkpoints export`"
    )
    reb = commands.add_parser("rebuild", help="fold each log again into its read models, compare")
    reb.add_argument("services", nargs="*", default=["all"])
    tok = commands.add_parser("token", help="issue a development token")
    tok.add_argument("--role", required=True, choices=ROLES)
    tok.add_argument("--subject", help="who the token is for (default: the role)")
    tok.add_argument("--branch", action="append", default=[], help="branch in scope (repeat)")
    tok.add_argument("--school", action="append", default=[], help="school in scope (repeat)")
    tok.add_argument("--member", help="the member id of a member's token")
    tok.add_argument("--ttl-hours", type=float, default=8.0)
    pro = commands.add_parser("provision", help="least-privilege roles and Redis users")
    pro.add_argument("--out", default=".run/credentials.json", help="where to write them")
    pro.add_argument("--user-prefix", default="party")
    pro.add_argument(
        "--passwords-from-env",
        action="store_true",
        help="take each service's password from PARTY_PASSWORD_<SERVICE> instead of random ones",
    )
    pro.add_argument("--keys-dir", help="where the signing keys go (default PARTY_KEYS_DIR)")
    pro.add_argument(
        "--per-service-dirs",
        action="store_true",
        help="also write DIR/{service}/: that service's private key and every public key file",
    )
    pro.add_argument(
        "--no-keys",
        action="store_true",
        help="leave the signing keys alone (the operator provisions them: Kubernetes)",
    )
    pro.add_argument(
        "--campus-system",
        action="append",
        default=[],
        metavar="NAME",
        help="also a Redis user for this outside campus system (repeat): reads the streams, "
        "with its own consumer group; its password goes to the credentials file",
    )
    pro.add_argument(
        "--disable-default-user",
        action="store_true",
        help="turn Redis's default user off (first making an administrator user when the "
        "admin URL is the default user's)",
    )
    pro.add_argument(
        "--revoke-public-connect",
        action="store_true",
        help="revoke PUBLIC's CONNECT on every other database of the PostgreSQL server (a "
        "server of its own; on a shared one that is the DBA's decision)",
    )
    keys = commands.add_parser("keys", help="the services' signing keys")
    keys.add_argument("action", choices=["list", "init", "rotate", "revoke"])
    keys.add_argument("services", nargs="*", help="services (revoke: SERVICE KEY_ID)")
    keys.add_argument("--after", type=int, help="revoke: the last position the key still signs")
    keys.add_argument("--keys-dir", help="default PARTY_KEYS_DIR")
    keys.add_argument(
        "--per-service-dirs",
        action="store_true",
        help="then refresh DIR/{service}/: that service's private key and every public key file",
    )
    con = commands.add_parser("contracts", help="regenerate the published documents")
    con.add_argument("--check", action="store_true", help="only list stale documents")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args.services)
    if args.command == "migrate":
        return asyncio.run(_migrate(args.services))
    if args.command == "verify":
        return asyncio.run(_verify(args.services, args.checkpoints))
    if args.command == "rebuild":
        return asyncio.run(_rebuild(args.services))
    if args.command == "token":
        return _token(args)
    if args.command == "provision":
        return _provision_command(args)
    if args.command == "keys":
        return _keys(args)
    return _contracts(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

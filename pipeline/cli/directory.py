"""`emaillog directory import|export|retire`: the salespersons, contacts and templates.

People are never deleted, they are retired: `import --replace` retires the salespersons and
contacts its files leave out, `retire` retires one. A retired person never matches again;
their past entries keep their codes; export lists them with `status` retired. A running
service reloads its directory on each change (LISTEN/NOTIFY), so nothing needs a restart.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pipeline.cli.common import Subparsers, configure_command_logging
from pipeline.config import Settings
from pipeline.errors import ConfigError, InputError
from pipeline.store.db import open_database
from pipeline.store.directory_repo import (
    HEADERS,
    KINDS,
    Kind,
    export_csv,
    import_csv,
    replace_csv,
    retire,
)

_OPTION: dict[Kind, str] = {
    "salespersons": "--salespersons",
    "contacts": "--contacts",
    "alt_addresses": "--alt-addresses",
    "templates": "--templates",
}


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "directory",
        help="import or export salespersons, contacts, alternative addresses, templates",
        description="The directory the rules match addresses against, as CSV files.",
    )
    commands = parser.add_subparsers(dest="directory_command", metavar="COMMAND", required=True)

    importer = commands.add_parser(
        "import",
        help="upsert CSV files into the directory",
        description="Insert or update rows by key. Files are imported in the order "
        "salespersons, contacts, alternative addresses, templates; each file in one "
        "transaction: a bad row (reported with file and line) means nothing of that file "
        "is imported. UTF-8, comma-separated, header line first, columns in any order.",
    )
    for kind in KINDS:
        importer.add_argument(
            _OPTION[kind],
            dest=kind,
            type=Path,
            metavar="FILE.csv",
            help=f"columns: {','.join(HEADERS[kind])}",
        )
    importer.add_argument(
        "--replace",
        action="store_true",
        help="each file given is the whole truth: salespersons and contacts missing from it "
        "are retired (never deleted: their entries keep their names), alternative addresses "
        "and templates missing from it are deleted",
    )
    importer.set_defaults(handler=run_import)

    exporter = commands.add_parser(
        "export",
        help="write the directory as CSV files into DIR",
        description="Write salespersons.csv, contacts.csv, alt-addresses.csv and "
        "templates.csv into DIR (created if missing), in the format `import` reads.",
    )
    exporter.add_argument("dir", type=Path, metavar="DIR")
    exporter.set_defaults(handler=run_export)

    retirer = commands.add_parser(
        "retire",
        help="retire a salesperson or a contact: they never match again",
        description="Retire people who left (a salesperson) or were deleted in the ERP (a "
        "contact). They are not deleted: their past entries keep their names, and export "
        "shows them as retired. Importing them again makes them active again.",
    )
    who = retirer.add_mutually_exclusive_group(required=True)
    who.add_argument("--salesperson", dest="salespersons", action="append", metavar="CODE")
    who.add_argument("--contact", dest="contacts", action="append", metavar="NO")
    retirer.set_defaults(handler=run_retire)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    files: list[tuple[Kind, Path]] = [
        (kind, getattr(args, kind)) for kind in KINDS if getattr(args, kind) is not None
    ]
    if not files:
        options = ", ".join(_OPTION.values())
        # A usage error (exit 2), like argparse's own.
        raise ConfigError([f"directory import: nothing to import: give at least one of {options}"])
    configure_command_logging(settings)
    asyncio.run(_import(settings, files, replace=args.replace))
    return 0


async def _import(settings: Settings, files: list[tuple[Kind, Path]], *, replace: bool) -> None:
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        for kind, path in files:
            what = kind.replace("_", " ")
            try:
                if replace:
                    count, removed = await replace_csv(conn, kind, path)
                else:
                    count, removed = await import_csv(conn, kind, path), 0
            except InputError as exc:
                done = [p for k, p in files[: files.index((kind, path))]]
                note = f" (already imported: {', '.join(map(str, done))})" if done else ""
                raise InputError(f"{exc}{note}") from exc
            print(f"imported {count} {what} from {path}")
            if replace:
                gone = "retired" if kind in ("salespersons", "contacts") else "deleted"
                print(f"{gone} {removed} {what} not in {path}")


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings)
    for path in asyncio.run(_export(settings, args.dir)):
        print(f"wrote {path}")
    return 0


async def _export(settings: Settings, directory: Path) -> list[Path]:
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        try:
            return await export_csv(conn, directory)
        except OSError as exc:
            raise InputError(f"{directory}: cannot write: {exc.strerror or exc}") from exc


def run_retire(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = "salespersons" if args.salespersons else "contacts"
    keys: list[str] = args.salespersons or args.contacts
    configure_command_logging(settings)
    asyncio.run(_retire(settings, kind, keys))
    return 0


async def _retire(settings: Settings, kind: Kind, keys: list[str]) -> None:
    singular = kind.removesuffix("s")
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        for key in keys:
            when = await retire(conn, kind, key)
            print(f"retired {singular} {key} (since {when.isoformat()})")

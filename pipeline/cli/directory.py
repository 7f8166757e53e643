"""`emaillog directory import|export`: the salespersons, contacts and templates, as CSV."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pipeline.cli.common import Subparsers, configure_command_logging
from pipeline.config import Settings
from pipeline.errors import ConfigError, InputError
from pipeline.store.db import open_database
from pipeline.store.directory_repo import HEADERS, KINDS, Kind, export_csv, import_csv

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
    importer.set_defaults(handler=run_import)

    exporter = commands.add_parser(
        "export",
        help="write the directory as CSV files into DIR",
        description="Write salespersons.csv, contacts.csv, alt-addresses.csv and "
        "templates.csv into DIR (created if missing), in the format `import` reads.",
    )
    exporter.add_argument("dir", type=Path, metavar="DIR")
    exporter.set_defaults(handler=run_export)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    files: list[tuple[Kind, Path]] = [
        (kind, getattr(args, kind)) for kind in KINDS if getattr(args, kind) is not None
    ]
    if not files:
        options = ", ".join(_OPTION.values())
        # A usage error (exit 2), like argparse's own.
        raise ConfigError([f"directory import: nothing to import: give at least one of {options}"])
    configure_command_logging(settings)
    asyncio.run(_import(settings, files))
    return 0


async def _import(settings: Settings, files: list[tuple[Kind, Path]]) -> None:
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        for kind, path in files:
            try:
                count = await import_csv(conn, kind, path)
            except InputError as exc:
                done = [p for k, p in files[: files.index((kind, path))]]
                note = f" (already imported: {', '.join(map(str, done))})" if done else ""
                raise InputError(f"{exc}{note}") from exc
            print(f"imported {count} {kind.replace('_', ' ')} from {path}")


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

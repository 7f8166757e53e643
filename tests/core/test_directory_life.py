"""Issue 16, point 5: the directory's life. `import --replace` and `retire` retire people
(never delete them); retired people never match; export shows them; the running service's
watcher picks it up. Real PostgreSQL.

NAV has no retirement: a Salesperson/Purchaser or Contact is deleted, and `IsSalesperson` /
`IsContact` (codeunit 5064) simply stop finding it, while its Interaction Log Entries keep
their codes. Retiring gives the same matching without losing the names of past entries.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.store.db import Database, open_database
from pipeline.store.directory_repo import (
    DirectoryWatcher,
    export_csv,
    import_csv,
    load_directory,
    replace_csv,
    retire,
)
from tests.settings import make_settings

SALESPERSONS = "code,name,email\nSP1,Sam,sam@us.example\nSP2,Sue,sue@us.example\n"
CONTACTS = (
    "no,name,type,company_no,email\n"
    "C1,Ann,person,,ann@them.example\nC2,Bob,person,,bob@them.example\n"
    "C9,Shared Nine,person,,shared@them.example\nC10,Shared Ten,person,,shared@them.example\n"
)
ALT = "contact_no,code,email\nC1,HOME,ann@home.example\nC2,HOME,bob@home.example\n"
TEMPLATES = "code,description,group_code,unit_cost,unit_duration_min\nEMAIL,E-mail,S,1,2\n"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with open_database(make_settings(database_url=database_url).database) as database:
        yield database


@pytest.fixture
async def conn(db: Database, tmp_path: Path) -> AsyncIterator[asyncpg.Connection]:
    async with db.pool.acquire() as connection:
        for kind, text in (
            ("salespersons", SALESPERSONS),
            ("contacts", CONTACTS),
            ("alt_addresses", ALT),
            ("templates", TEMPLATES),
        ):
            await import_csv(connection, kind, write(tmp_path, f"{kind}.csv", text))  # type: ignore[arg-type]
        yield connection


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r.get("code") or r["no"]: r for r in csv.DictReader(f)}


async def test_replace_retires_people_missing_from_the_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    only_sam = write(tmp_path, "sp.csv", "code,name,email\nSP1,Sam,sam@us.example\n")
    assert await replace_csv(conn, "salespersons", only_sam) == (1, 1)
    directory = await load_directory(conn)
    assert directory.salesperson_for("sam@us.example") is not None
    assert directory.salesperson_for("sue@us.example") is None  # retired never matches
    # Retired, not deleted: the row (and so the name of past entries) stays.
    row = await conn.fetchrow("SELECT name, retired_at FROM salesperson WHERE code = 'SP2'")
    assert row["name"] == "Sue" and row["retired_at"] is not None
    # Replacing again retires nobody new; importing Sue again makes her active again.
    assert await replace_csv(conn, "salespersons", only_sam) == (1, 0)
    await import_csv(
        conn,
        "salespersons",
        write(tmp_path, "sue.csv", "code,name,email\nSP2,Sue,sue@us.example\n"),
    )
    assert (await load_directory(conn)).salesperson_for("sue@us.example") is not None


async def test_replace_of_contacts_retires_them_and_their_alt_addresses_stop_matching(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    text = "no,name,type,company_no,email\nC2,Bob,person,,bob@them.example\n"
    assert await replace_csv(conn, "contacts", write(tmp_path, "c.csv", text)) == (1, 3)
    directory = await load_directory(conn)
    assert directory.contact_for("ann@them.example") is None
    assert directory.contact_for("ann@home.example") is None  # C1's alt. address
    assert directory.contact_for("shared@them.example") is None
    match = directory.contact_for("bob@home.example")
    assert match is not None and match.contact_no == "C2"
    assert await conn.fetchval("SELECT count(*) FROM contact") == 4  # nobody deleted


async def test_replace_deletes_alt_addresses_and_templates_missing_from_the_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    alt = write(tmp_path, "a.csv", "contact_no,code,email\nC2,HOME,bob@home.example\n")
    assert await replace_csv(conn, "alt_addresses", alt) == (1, 1)
    assert (await load_directory(conn)).contact_for("ann@home.example") is None
    tpl = write(
        tmp_path, "t.csv", "code,description,group_code,unit_cost,unit_duration_min\nOTHER,,,0,0\n"
    )
    assert await replace_csv(conn, "templates", tpl) == (1, 1)
    assert (await load_directory(conn)).template("EMAIL") is None


async def test_a_bad_file_replaces_nothing(conn: asyncpg.Connection, tmp_path: Path) -> None:
    bad = write(tmp_path, "sp.csv", "code,name,email\nSP1,Sam,not-an-address\n")
    with pytest.raises(InputError, match="nothing of this file imported"):
        await replace_csv(conn, "salespersons", bad)
    assert await conn.fetchval("SELECT count(*) FROM salesperson WHERE retired_at IS NULL") == 2


async def test_retire_one_person(conn: asyncpg.Connection) -> None:
    first = await retire(conn, "contacts", "C9")
    directory = await load_directory(conn)
    # Two contacts share an address and "C10" sorts before "C9" (NAV's key order): retiring
    # C9 leaves the address with C10; retiring C10 as well leaves it to nobody.
    shared = directory.contact_for("shared@them.example")
    assert shared is not None and shared.contact_no == "C10"
    await retire(conn, "contacts", "C10")
    assert (await load_directory(conn)).contact_for("shared@them.example") is None
    assert await retire(conn, "contacts", "C9") == first  # retiring twice keeps the first time
    await retire(conn, "salespersons", "SP1")
    assert (await load_directory(conn)).salesperson_for("sam@us.example") is None
    with pytest.raises(InputError, match="no salesperson with code 'NOPE'"):
        await retire(conn, "salespersons", "NOPE")


async def test_retiring_the_lowest_of_a_shared_address_hands_it_to_the_next(
    conn: asyncpg.Connection,
) -> None:
    await retire(conn, "contacts", "C10")
    shared = (await load_directory(conn)).contact_for("shared@them.example")
    assert shared is not None and shared.contact_no == "C9"


async def test_export_shows_retired_people_and_round_trips(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    when = await retire(conn, "salespersons", "SP2")
    first = await export_csv(conn, tmp_path / "out1")
    salespersons = rows(first[0])
    assert salespersons["SP2"]["status"] == "retired"
    assert salespersons["SP2"]["retired_at"] == when.isoformat()
    assert (salespersons["SP1"]["status"], salespersons["SP1"]["retired_at"]) == ("active", "")
    assert rows(first[1])["C1"]["status"] == "active"
    # The exported file imports as it is: SP2 stays retired, with its time.
    await import_csv(conn, "salespersons", first[0])
    second = await export_csv(conn, tmp_path / "out2")
    assert second[0].read_text() == first[0].read_text()
    assert (await load_directory(conn)).salesperson_for("sue@us.example") is None


async def test_status_column_is_checked(conn: asyncpg.Connection, tmp_path: Path) -> None:
    bad = write(tmp_path, "sp.csv", "code,name,email,status\nSP1,Sam,sam@us.example,gone\n")
    with pytest.raises(InputError, match="unknown status 'gone'"):
        await import_csv(conn, "salespersons", bad)
    retired = write(tmp_path, "r.csv", "code,name,email,status\nSP1,Sam,sam@us.example,retired\n")
    await import_csv(conn, "salespersons", retired)
    assert (await load_directory(conn)).salesperson_for("sam@us.example") is None


async def test_the_watcher_picks_up_a_retirement(db: Database, conn: asyncpg.Connection) -> None:
    watcher = DirectoryWatcher(db, debounce_seconds=0.05, reconnect_seconds=0.1)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        assert watcher.current.salesperson_for("sue@us.example") is not None
        await retire(conn, "salespersons", "SP2")
        async with asyncio.timeout(30):
            while watcher.current.salesperson_for("sue@us.example") is not None:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- the commands (sync: main() runs its own event loop) -------------------------------------


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in list(os.environ):
        if name.startswith("EMAILLOG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EMAILLOG_DATABASE_URL", database_url)
    return database_url


def test_directory_commands_replace_retire_and_export(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = write(tmp_path, "sp.csv", SALESPERSONS)
    ct = write(tmp_path, "ct.csv", CONTACTS)
    assert main(["directory", "import", "--salespersons", str(sp), "--contacts", str(ct)]) == 0
    only_sam = write(tmp_path, "sp1.csv", "code,name,email\nSP1,Sam,sam@us.example\n")
    capsys.readouterr()
    assert main(["directory", "import", "--replace", "--salespersons", str(only_sam)]) == 0
    out = capsys.readouterr().out
    assert f"imported 1 salespersons from {only_sam}" in out
    assert f"retired 1 salespersons not in {only_sam}" in out

    assert main(["directory", "retire", "--contact", "C1", "--contact", "C2"]) == 0
    out = capsys.readouterr().out
    assert "retired contact C1" in out and "retired contact C2" in out
    assert main(["directory", "retire", "--salesperson", "NOPE"]) == 1
    assert "no salesperson with code 'NOPE'" in capsys.readouterr().err
    assert main(["directory", "retire", "--salesperson", "SP1", "--contact", "C1"]) == 2

    assert main(["directory", "export", str(tmp_path / "out")]) == 0
    assert rows(tmp_path / "out" / "salespersons.csv")["SP2"]["status"] == "retired"
    contacts = rows(tmp_path / "out" / "contacts.csv")
    assert [no for no, r in contacts.items() if r["status"] == "retired"] == ["C1", "C2"]


@pytest.mark.parametrize("argv", [["directory", "retire"], ["directory", "import"]])
def test_new_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--replace" in out or "--salesperson" in out

"""The store against a real PostgreSQL: migrations, constraints, CSV, the directory watcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pipeline.errors import ConfigError, DatabaseUnavailable, InputError
from pipeline.store.db import Database, open_database
from pipeline.store.directory_repo import DirectoryWatcher, export_csv, import_csv, load_directory
from pipeline.store.migrate import apply_migrations, available_migrations
from pipeline.store.queries import is_logged
from tests.settings import make_settings


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with open_database(make_settings(database_url=database_url).database) as database:
        yield database


@pytest.fixture
async def conn(db: Database) -> AsyncIterator[asyncpg.Connection]:
    async with db.pool.acquire() as connection:
        yield connection


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- migrations -----------------------------------------------------------------------------


async def test_migrations_apply_once_and_then_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # Every shipped migration (issue 16 added 0002), in order, then nothing.
        names = [m.name for m in available_migrations()]
        assert names[:2] == ["0001_initial.sql", "0002_directory_retired.sql"]
        assert await apply_migrations(conn) == names
        assert await apply_migrations(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(names)
    finally:
        await conn.close()


async def test_two_concurrent_migrators_apply_each_migration_once(database_url: str) -> None:
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        results = await asyncio.gather(apply_migrations(a), apply_migrations(b))
        assert sorted(results) == [[], [m.name for m in available_migrations()]]
    finally:
        await a.close()
        await b.close()


# --- constraints ----------------------------------------------------------------------------


async def test_a_message_cannot_be_stored_twice_per_mailbox(conn: asyncpg.Connection) -> None:
    insert = "INSERT INTO stored_message (mailbox, message_key, content_hash) VALUES ($1, $2, 'h')"
    await conn.execute(insert, "q@us.example", "<m1@x>")
    await conn.execute(insert, "other@us.example", "<m1@x>")  # another mailbox is another queue
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, "q@us.example", "<m1@x>")


async def test_an_entry_cannot_be_written_twice_per_message_contact_salesperson(
    conn: asyncpg.Connection,
) -> None:
    sm = await conn.fetchval(
        "INSERT INTO stored_message (mailbox, message_key, content_hash) "
        "VALUES ('q', 'k', 'h') RETURNING id"
    )
    insert = (
        "INSERT INTO interaction_log_entry (stored_message_id, contact_no, salesperson_code, "
        "information_flow, initiated_by) VALUES ($1, $2, 'SP1', 'outbound', 'us')"
    )
    await conn.execute(insert, sm, "C001")
    await conn.execute(insert, sm, "C002")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, sm, "C001")


async def test_is_logged_by_mailbox_or_any_mailbox(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO stored_message (mailbox, message_key, content_hash) "
        "VALUES ('q1', '<a>', 'h'), ('q2', '<b>', 'h')"
    )
    assert await is_logged(conn, "q1", ["<a>", "<b>", "<c>"]) == {"<a>"}
    assert await is_logged(conn, "", ["<a>", "<b>", "<c>"]) == {"<a>", "<b>"}
    assert await is_logged(conn, None, []) == set()


# --- CSV import and export ------------------------------------------------------------------


async def test_import_upserts_by_key_and_loads_into_the_directory(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    sp = write(tmp_path, "sp.csv", "code,name,email\nSP1,Sam,Sam@Us.Example\nSP2,Sue,\n")
    assert await import_csv(conn, "salespersons", sp) == 2
    write(
        tmp_path, "sp.csv", "email,code,name\nsam@us.example,SP1,Samuel\n"
    )  # columns in any order
    assert await import_csv(conn, "salespersons", sp) == 1
    rows = await conn.fetch("SELECT code, name, email FROM salesperson ORDER BY code")
    assert [tuple(r) for r in rows] == [("SP1", "Samuel", "sam@us.example"), ("SP2", "Sue", "")]
    found = (await load_directory(conn)).salesperson_for("SAM@us.example")
    assert found is not None and found.name == "Samuel"


@pytest.mark.parametrize(
    "kind, text, line, reason",
    [
        ("salespersons", "code,name\nSP1,Sam\n", 1, "wrong header"),
        (
            "salespersons",
            "code,name,email\nSP1,Sam,a@b.example\n,Nobody,c@d.example\n",
            3,
            "empty code",
        ),
        (
            "salespersons",
            "code,name,email\nSP1,A,a@b.example\nSP2,B,b@b.example\nSP1,C,c@b.example\n",
            4,
            "duplicate key SP1 (first on line 2)",
        ),
        (
            "salespersons",
            "code,name,email\nSP1,Sam,Sam <sam@us.example>\n",
            2,
            "is not a bare address",
        ),
        (
            "contacts",
            f"no,name,type,company_no,email\nC1,Long,person,,{'x' * 81}@b.example\n",
            2,
            "longer than 80",
        ),
        (
            "contacts",
            "no,name,type,company_no,email\nC1,Ann,robot,,ann@x.example\n",
            2,
            "unknown type 'robot'",
        ),
        (
            "alt_addresses",
            "contact_no,code,email\nC404,HOME,a@b.example\n",
            2,
            "unknown contact 'C404'",
        ),
        (
            "templates",
            "code,description,group_code,unit_cost,unit_duration_min\nEMAIL,E-mail,G,cheap,1\n",
            2,
            "unit_cost 'cheap' is not a number",
        ),
        ("salespersons", "code,name,email\nSP1,Sam\n", 2, "expected 3 fields, got 2"),
    ],
)
async def test_import_errors_name_file_line_and_reason(
    conn: asyncpg.Connection, tmp_path: Path, kind: str, text: str, line: int, reason: str
) -> None:
    path = write(tmp_path, "in.csv", text)
    with pytest.raises(InputError) as caught:
        await import_csv(conn, kind, path)  # type: ignore[arg-type]
    assert f"{path}:{line}: " in str(caught.value)
    assert reason in str(caught.value)


async def test_a_bad_row_imports_nothing_of_its_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    good = "no,name,type,company_no,email\nC1,Ann,person,,ann@x.example\n"
    await import_csv(conn, "contacts", write(tmp_path, "c1.csv", good))
    bad = (
        "no,name,type,company_no,email\n"
        "C1,Changed,person,,ann@x.example\n"
        "C2,Bob,person,,bob@x.example\n"
        "C3,Eve,alien,,eve@x.example\n"
    )
    with pytest.raises(InputError, match="nothing of this file imported"):
        await import_csv(conn, "contacts", write(tmp_path, "c2.csv", bad))
    rows = await conn.fetch("SELECT no, name FROM contact ORDER BY no")
    assert [tuple(r) for r in rows] == [("C1", "Ann")]


async def test_unreadable_and_empty_files_are_input_errors(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="cannot read"):
        await import_csv(conn, "contacts", tmp_path / "missing.csv")
    with pytest.raises(InputError, match="empty file"):
        await import_csv(conn, "contacts", write(tmp_path, "empty.csv", ""))
    (tmp_path / "latin1.csv").write_bytes(b"code,name,email\nSP1,J\xfcrgen,\n")
    with pytest.raises(InputError, match="not UTF-8"):
        await import_csv(conn, "salespersons", tmp_path / "latin1.csv")


async def test_export_round_trip(
    db: Database, database_url: str, tmp_path: Path, pg_server_url: str
) -> None:
    from tests.conftest import _create_database

    files = {
        "salespersons": 'code,name,email\nSP1,"Sam, Sales",sam@us.example\n',
        "contacts": "no,name,type,company_no,email\n"
        "C0,Them Ltd,company,,info@them.example\nC1,Ann,person,C0,ann@them.example\n",
        "alt_addresses": "contact_no,code,email\nC1,HOME,ann@home.example\n",
        "templates": "code,description,group_code,unit_cost,unit_duration_min\n"
        "EMAIL,E-mail,SALES,1.50,2\n",
    }
    async with db.pool.acquire() as conn:
        for kind, text in files.items():
            await import_csv(conn, kind, write(tmp_path, f"{kind}.in.csv", text))  # type: ignore[arg-type]
        first = await export_csv(conn, tmp_path / "out1")
    assert [p.name for p in first] == [
        "salespersons.csv",
        "contacts.csv",
        "alt-addresses.csv",
        "templates.csv",
    ]

    other_url = await _create_database(pg_server_url)
    async with (
        open_database(make_settings(database_url=other_url).database) as other,
        other.pool.acquire() as conn,
    ):
        for kind, path in zip(
            ("salespersons", "contacts", "alt_addresses", "templates"), first, strict=True
        ):
            await import_csv(conn, kind, path)  # type: ignore[arg-type]
        second = await export_csv(conn, tmp_path / "out2")
    for a, b in zip(first, second, strict=True):
        assert a.read_text() == b.read_text()
    assert 'SP1,"Sam, Sales",sam@us.example' in first[0].read_text()
    assert "EMAIL,E-mail,SALES,1.50,2.00" in first[3].read_text()


# --- the directory watcher ------------------------------------------------------------------


async def wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll until `predicate()`; the bound only stops a broken test from hanging."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), 30)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


async def test_watcher_sees_a_new_contact_and_survives_a_lost_connection(db: Database) -> None:
    watcher = DirectoryWatcher(db, debounce_seconds=0.05, reconnect_seconds=0.1)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        assert watcher.current.contact_for("new@them.example") is None
        async with db.pool.acquire() as conn:
            await conn.execute("INSERT INTO contact (no, email) VALUES ('C1', 'New@Them.Example')")
        await wait_until(
            lambda: watcher.current.contact_for("new@them.example") is not None, "reload on NOTIFY"
        )

        # Kill the LISTEN connection from the server side; the watcher must come back.
        async with db.pool.acquire() as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            )
            assert killed == 1
        reloads = watcher.reloads
        await wait_until(lambda: watcher.reloads > reloads, "reload after reconnecting")
        async with db.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO salesperson (code, email) VALUES ('SP1', 'sam@us.example')"
            )
        await wait_until(
            lambda: watcher.current.salesperson_for("sam@us.example") is not None,
            "reload after reconnect",
        )
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- opening the database -------------------------------------------------------------------


async def test_unreachable_server_is_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"cannot connect to PostgreSQL at 127.0.0.1:1/x"):
        async with open_database(
            make_settings(database_url="postgresql://u:secret@127.0.0.1:1/x").database
        ):
            pass


async def test_malformed_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        async with open_database(make_settings(database_url="mysql://u:secret@h/x").database):
            pass
    assert "secret" not in str(caught.value)


async def test_embedded_server_starts_is_shared_and_stops(tmp_path: Path) -> None:
    settings = make_settings(database_url="", data_dir=tmp_path / "data")
    async with open_database(settings.database) as outer:
        async with open_database(settings.database) as inner:
            assert inner.url == outer.url
            assert "/emaillog?" in inner.url
        # The inner exit did not stop the server the outer one still uses.
        async with outer.pool.acquire() as conn:
            migrations = len(available_migrations())  # issue 16 added 0002
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == migrations
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(outer.url, timeout=5)

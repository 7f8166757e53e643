"""The web UI in the processes: `serve()` (emaillog run) serves it next to intake, with the
intake's state; `emaillog ui` serves it on its own, reading what `run` logged and fetching
stored messages from the storage folder, never taking mail; both refuse what is unsafe."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from exchange_sim import Simulator
from pipeline.config import Settings
from pipeline.model import Outcome
from tests.service.harness import (
    MAILBOX,
    QUEUE,
    STORAGE,
    WAIT_SECONDS,
    free_port,
    mime,
    running,
    settings_for,
)


def ui_settings(sim: Simulator, db: str) -> Settings:
    # EMAILLOG_UI_AUTH=none is allowed on loopback only: enough to test the wiring.
    return settings_for(sim, db, ui_host="127.0.0.1", ui_port=free_port(), ui_auth="none")


def ui_url(settings: Settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.ui.port}{path}"


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


async def test_run_serves_the_ui_with_the_intake_status(sim: Simulator, db: str) -> None:
    settings = ui_settings(sim, db)
    raw, _ = mime(subject="Offer")
    async with running(settings) as service:
        await service.until(lambda: service.value("emaillog_source_connected") == 1, "subscribed")
        sim.deliver(MAILBOX, QUEUE, raw)
        await service.until(lambda: service.count(Outcome.LOGGED) == 1, "logged")
        status, page = await get(ui_url(settings, "/ops"))
        assert status == 200
        for shown in (b"ews", MAILBOX.encode(), b"streaming"):
            assert shown in page
        status, body = await get(ui_url(settings, "/api/v1/entries"))
        assert status == 200
        [entry] = json.loads(body)["entries"]
        status, stored = await get(entry["stored_message"]["mime_url"])
        assert (status, stored) == (200, raw)


async def test_ui_alone_reads_the_log_and_stored_messages_and_takes_no_mail(
    sim: Simulator, db: str, tmp_path: Path
) -> None:
    settings = ui_settings(sim, db)
    raw, _ = mime(subject="Offer")
    without_ui = dataclasses.replace(settings, ui=dataclasses.replace(settings.ui, port=0))
    async with running(without_ui) as service:  # `emaillog run` logs one message
        sim.deliver(MAILBOX, QUEUE, raw)
        await service.until(lambda: service.count(Outcome.LOGGED) == 1, "logged")
    waiting = sim.deliver(MAILBOX, QUEUE, mime(subject="Later")[0])

    log_path = tmp_path / "ui.log"
    with log_path.open("wb") as out:
        ui = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "pipeline", "ui"), env=_env(settings), stdout=out, stderr=out
        )
        try:
            entries = await _until_answering(ui_url(settings, "/api/v1/entries"), ui, log_path)
            [entry] = entries
            status, stored = await get(entry["stored_message"]["mime_url"])
            assert (status, stored) == (200, raw)
            # The queue is untouched: `ui` never subscribes nor takes mail.
            assert [i["id"] for i in sim.list_items(MAILBOX, QUEUE)] == [waiting]
            assert len(sim.list_items(MAILBOX, STORAGE)) == 1
            ui.send_signal(signal.SIGTERM)
            async with asyncio.timeout(WAIT_SECONDS):
                assert await ui.wait() == 0, log_path.read_text()
        finally:
            if ui.returncode is None:
                ui.kill()
                await ui.wait()


async def test_ui_refuses_an_unmigrated_database_and_unsafe_settings(
    sim: Simulator, database_url: str
) -> None:
    settings = settings_for(
        sim, database_url, ui_host="127.0.0.1", ui_port=free_port(), ui_auth="none"
    )
    code, output = await _run_ui(_env(settings))
    assert code == 1
    assert "emaillog migrate" in output and "0001_initial.sql" in output
    code, output = await _run_ui(_env(settings, ui_host="0.0.0.0"))
    assert code == 2
    assert "EMAILLOG_UI_AUTH=none" in output
    code, output = await _run_ui(_env(settings, ui_auth="token"))
    assert code == 2
    assert "EMAILLOG_API_TOKENS_FILE" in output


def _env(settings: Settings, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
    env.update(settings.environment())
    env.update({f"EMAILLOG_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


async def _run_ui(env: dict[str, str]) -> tuple[int, str]:
    ui = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pipeline", "ui"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(WAIT_SECONDS):
        output, _ = await ui.communicate()
    assert ui.returncode is not None
    return ui.returncode, output.decode()


async def _until_answering(
    url: str, process: asyncio.subprocess.Process, log_path: Path
) -> list[dict[str, object]]:
    async with asyncio.timeout(WAIT_SECONDS), aiohttp.ClientSession() as http:
        while True:
            assert process.returncode is None, log_path.read_text()
            try:
                async with http.get(url) as response:
                    assert response.status == 200, await response.text()
                    entries: list[dict[str, object]] = (await response.json())["entries"]
                    return entries
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)

"""`emaillog demo` as a user runs it, left running: the web UI address and token it prints
work, and the demo's messages are there to browse (entries, and each logged message's
stored copy, byte for byte, fetched from each source's storage folder) until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from pipeline.cli.demo.data import SAMPLES, expected_entries
from tests.demo.test_demo_run import RUN_LIMIT_SECONDS, _free_port

BANNER = re.compile(r"web UI and REST API at (http://\S+/)  \(sign in with token (\w+)\)")
#: The line after which the demo keeps running for the user (see command._finish).
RUNNING = "Ctrl-C stops it."


@pytest.mark.parametrize("source", ["ews", "graph", "imap"])
async def test_the_demo_ui_shows_the_demo_log_with_the_printed_token(source: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"emaillog-demo-ui-{source}-test-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
        env |= {
            "EMAILLOG_DATA_DIR": folder,
            "EMAILLOG_HTTP_PORT": str(_free_port()),
            "EMAILLOG_UI_PORT": str(_free_port()),
        }
        with (Path(folder) / "stderr").open("wb") as stderr:
            demo = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "pipeline", "demo", "--source", source),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
            try:
                url, token = await _until_running(demo)
                await _browse(url, token)
                demo.send_signal(signal.SIGINT)
                async with asyncio.timeout(RUN_LIMIT_SECONDS):
                    assert await demo.wait() == 0, (Path(folder) / "stderr").read_text()
            finally:
                if demo.returncode is None:
                    demo.kill()
                    await demo.wait()


async def _until_running(demo: asyncio.subprocess.Process) -> tuple[str, str]:
    """The UI's address and token from the banner, once the demo says it keeps running."""
    assert demo.stdout is not None
    found: re.Match[str] | None = None
    async with asyncio.timeout(RUN_LIMIT_SECONDS):
        while (line := (await demo.stdout.readline()).decode()) and RUNNING not in line:
            found = found or BANNER.search(line)
    assert found is not None, "the demo printed no UI address and token"
    return found[1], found[2]


async def _browse(url: str, token: str) -> None:
    logged = {s.raw for s in SAMPLES if s.entries}
    bearer = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "api/v1/entries?limit=500") as anonymous:
            assert anonymous.status == 401
        async with http.get(url + "api/v1/entries?limit=500", headers=bearer) as response:
            assert response.status == 200
            entries = (await response.json())["entries"]
        assert len(entries) == expected_entries()
        mime_urls = {entry["stored_message"]["mime_url"] for entry in entries}
        assert len(mime_urls) == len(logged)
        downloaded = set()
        for mime_url in mime_urls:
            async with http.get(mime_url, headers=bearer) as response:
                assert response.status == 200
                downloaded.add(await response.read())
        assert downloaded == logged  # the delivered messages, byte for byte
        async with http.get(url, headers=bearer) as page:
            assert page.status == 200
            assert page.content_type == "text/html"

"""The demo's web UI: on 127.0.0.1, signed in with a token made for this run.

Every run writes a fresh random token named "demo" (an administrator, so the operations
page shows too) to `<demo data dir>/ui-tokens`, readable by its owner only, and the demo
prints it with the UI's address: the logged samples are there to browse.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from pipeline.config import Settings, UiAuth

#: The demo token's name (the UI shows who is signed in by it).
DEMO_TOKEN_NAME = "demo"
TOKENS_FILE_NAME = "ui-tokens"


def with_demo_ui(settings: Settings, port: int) -> tuple[Settings, str]:
    """`settings` (already the demo's) with the UI on 127.0.0.1:`port`, token sign-in from a
    tokens file written now; and the token."""
    token = secrets.token_hex(16)
    path = settings.database.data_dir / TOKENS_FILE_NAME
    _write_private(path, f"{DEMO_TOKEN_NAME}:{token}\n")
    ui = dataclasses.replace(
        settings.ui,
        host="127.0.0.1",
        port=port,
        auth=UiAuth.TOKEN,
        api_tokens_file=str(path),
        admins=(DEMO_TOKEN_NAME,),
        public_url="",  # plain http on this machine: no Secure cookies
        session_secret=secrets.token_hex(32),  # one process: sessions need not outlive it
    )
    return dataclasses.replace(settings, ui=ui), token


def ui_url(settings: Settings) -> str:
    return f"http://{settings.ui.host}:{settings.ui.port}/"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a new inode: created 0600, never readable by others
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)

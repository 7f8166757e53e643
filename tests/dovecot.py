"""The tests' Dovecot: see `exchange_sim.dovecot` (shared with `emaillog demo --source imap` and
`python -m bench --source imap`), and the settings of an IMAP source on it."""

from __future__ import annotations

from typing import Any

from exchange_sim.dovecot import (
    DOVECOT,
    FOLDERS,
    OTHER_USER,
    PASSWORD,
    USER,
    Dovecot,
    _quote,
    free_ports,
    make_certificate,
    missing_message,
)
from tests.service.harness import QUEUE, STORAGE

__all__ = [
    "DOVECOT",
    "FOLDERS",
    "OTHER_USER",
    "PASSWORD",
    "USER",
    "Dovecot",
    "_quote",
    "free_ports",
    "imap_values",
    "make_certificate",
    "missing_message",
]


def imap_values(server: Dovecot) -> dict[str, Any]:
    """The settings (flat names) of an IMAP source on `server`'s test user, over TLS."""
    return {
        "source": "imap",
        "imap_host": "localhost",
        "imap_port": server.tls_port,
        "imap_security": "tls",
        "imap_ca_file": server.ca_file,
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_timeout_seconds": 10,
        "queue_folder": QUEUE,
        "storage_folder": STORAGE,
        "poll_interval_seconds": 1,
    }

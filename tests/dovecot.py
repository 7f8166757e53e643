"""The tests' Dovecot: see `exchange_sim.dovecot` (shared with `emaillog demo --source imap` and
`python -m bench --source imap`)."""

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

__all__ = [
    "DOVECOT",
    "FOLDERS",
    "OTHER_USER",
    "PASSWORD",
    "USER",
    "Dovecot",
    "_quote",
    "free_ports",
    "make_certificate",
    "missing_message",
]

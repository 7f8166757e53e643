"""Opaque EWS ids and change keys.

They look like Exchange's (standard base64), carry a magic prefix so the simulator can tell a
malformed id (ErrorInvalidIdMalformed) from an unknown one (ErrorItemNotFound), and a
change key is unique per modification.
"""

from __future__ import annotations

import base64
import binascii
import itertools

_MAGIC = b"\x00EXSIM"
ITEM = b"I"
FOLDER = b"F"
_CK_MAGIC = b"\x09CK"

_counter = itertools.count(1)


def new_id(kind: bytes) -> str:
    return base64.b64encode(_MAGIC + kind + next(_counter).to_bytes(8, "big")).decode("ascii")


def new_changekey(kind: bytes) -> str:
    return base64.b64encode(_CK_MAGIC + kind + next(_counter).to_bytes(8, "big")).decode("ascii")


def _decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def is_well_formed(value: str, kind: bytes) -> bool:
    raw = _decode(value)
    return raw is not None and len(raw) == 15 and raw.startswith(_MAGIC + kind)


def is_well_formed_changekey(value: str) -> bool:
    raw = _decode(value)
    return raw is not None and len(raw) == 12 and raw.startswith(_CK_MAGIC)

"""A Graph request and answer as plain data, the error Graph handlers raise, and Graph's
error body. Plain data so that $batch can run the same handlers as top-level requests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exchange_sim.model import StoreError

# EWS store errors as Graph's Outlook answers carry them: (status, code).
_STORE_ERRORS = {
    "ErrorItemNotFound": (404, "ErrorItemNotFound"),
    "ErrorFolderNotFound": (404, "ErrorItemNotFound"),
    "ErrorInvalidIdMalformed": (400, "ErrorInvalidIdMalformed"),
    "ErrorNonExistentMailbox": (404, "ErrorInvalidUser"),
}


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @classmethod
    def from_store(cls, error: StoreError) -> GraphError:
        status, code = _STORE_ERRORS.get(error.code, (400, error.code))
        return cls(status, code, error.text)


@dataclass(frozen=True)
class GraphRequest:
    method: str
    path: str  # below /v1.0/, without the query, segments normalised (see web.py)
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    base: str  # absolute URL of /v1.0, for links
    client: str  # the app's client id ("" without authentication)

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(value, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return value

    def page_size(self, default: int) -> int:
        """Prefer: odata.maxpagesize=N, else `default`."""
        for part in self.headers.get("Prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                return max(1, int(value.strip()))
        return default


@dataclass
class GraphResponse:
    status: int
    body: Any = None  # JSON object, bytes ($value) or None (204)
    spec: str | None = None  # validate_graph type spec of a JSON body
    headers: dict[str, str] = field(default_factory=dict)


def error_response(error: GraphError) -> GraphResponse:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {"date": now, "request-id": request_id, "client-request-id": request_id},
        }
    }
    return GraphResponse(error.status, body, "error", dict(error.headers))

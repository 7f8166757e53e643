"""The OpenAPI 3.1 document of `/api/v1` (served at `/api/v1/openapi.json`).

Written by hand from the same constants the API parses with (api_params), so limits and
choices cannot drift; a test validates it (openapi-spec-validator) and checks that its
paths and methods are exactly the routes registered under /api/v1.
"""

from __future__ import annotations

from typing import Any

from pipeline.web import api_params as p

JsonObject = dict[str, Any]


def _param(name: str, schema: JsonObject, doc: str, *, where: str = "query") -> JsonObject:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": doc,
        "schema": schema,
    }


def _text(name: str, doc: str) -> JsonObject:
    return _param(name, {"type": "string"}, doc)


def _json(schema_name: str, doc: str) -> JsonObject:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"description": doc, "content": {"application/json": {"schema": ref}}}


_ERRORS = {
    "400": _json("Error", "A bad parameter; the message names it."),
    "401": _json("Error", "No or an unknown bearer token (WWW-Authenticate: Bearer)."),
}
_NOT_FOUND = {"404": _json("Error", "Not found.")}

_DATE_TIME = {"type": "string", "format": "date-time"}
_LIMIT = _param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": p.MAX_LIMIT, "default": p.DEFAULT_LIMIT},
    "Entries per answer.",
)

_ENTRY_FILTERS = [
    _text("contact_no", "Entries of this contact."),
    _text("company_no", "Entries of this company and of its persons (the company at logging)."),
    _text("salesperson_code", "Entries of this salesperson/purchaser."),
    _param("direction", {"type": "string", "enum": list(p.DIRECTIONS)}, "Information flow."),
    _param(
        "since",
        _DATE_TIME,
        "ISO 8601 date or date-time (UTC without an offset): interaction_at >= since.",
    ),
    _param("until", _DATE_TIME, "ISO 8601 date or date-time: interaction_at < until."),
    _text(
        "q",
        "Words in the subject: each must begin a word of the subject (case-insensitive).",
    ),
    _text("cursor", "next_cursor of the previous page (opaque)."),
    _LIMIT,
    _param(
        "after_entry_no",
        {"type": "integer", "minimum": 0},
        "Follow mode: entries numbered above this, ascending. Takes only limit and "
        "wait_seconds; the answer is a FollowPage.",
    ),
    _param(
        "wait_seconds",
        {"type": "number", "minimum": 0},
        "Follow mode: wait up to this long (capped by EMAILLOG_API_MAX_WAIT_SECONDS) for at "
        "least one entry.",
    ),
]


def _schemas() -> JsonObject:
    text = {"type": "string"}
    nullable_text = {"type": ["string", "null"]}
    decimal = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "exact decimal"}
    stored = {
        "type": "object",
        "required": ["id", "internet_message_id", "web_link", "mime_url"],
        "properties": {
            "id": {"type": "integer"},
            "internet_message_id": nullable_text,
            "web_link": {**nullable_text, "description": "Open in Outlook (OWA link)"},
            "mime_url": {"type": "string", "format": "uri"},
        },
    }
    entry_props: JsonObject = {
        "entry_no": {"type": "integer"},
        "contact_no": text,
        "contact_company_no": text,
        "contact_alt_address_code": text,
        "salesperson_code": text,
        "information_flow": {"type": "string", "enum": ["outbound", "inbound"]},
        "initiated_by": {"type": "string", "enum": ["us", "them"]},
        "description": text,
        "subject": text,
        "interaction_at": {"type": ["string", "null"], "format": "date-time"},
        "template_code": text,
        "cost_lcy": decimal,
        "duration_min": decimal,
        "stored_message": {"$ref": "#/components/schemas/StoredMessage"},
    }
    entries = {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": text}},
        "StoredMessage": stored,
        "Entry": {"type": "object", "required": list(entry_props), "properties": entry_props},
        "EntryPage": {
            "type": "object",
            "required": ["entries", "next_cursor"],
            "properties": {"entries": entries, "next_cursor": nullable_text},
        },
        "FollowPage": {
            "type": "object",
            "required": ["entries", "next_after_entry_no"],
            "properties": {"entries": entries, "next_after_entry_no": {"type": "integer"}},
        },
        "Outcomes": _outcomes_schema(),
    }


def _outcomes_schema() -> JsonObject:
    return {
        "type": "object",
        "required": ["interval", "since", "until", "buckets"],
        "properties": {
            "interval": {"type": "string", "enum": list(p.INTERVALS)},
            "since": _DATE_TIME,
            "until": _DATE_TIME,
            "buckets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "counts"],
                    "properties": {
                        "start": _DATE_TIME,
                        "counts": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                            "description": "messages per outcome (absent: none)",
                        },
                    },
                },
            },
        },
    }


def _entries_path() -> JsonObject:
    entries_answer = {
        "description": "An EntryPage (newest first), or a FollowPage with after_entry_no.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EntryPage"},
                        {"$ref": "#/components/schemas/FollowPage"},
                    ]
                }
            }
        },
    }
    return {
        "get": {
            "operationId": "listEntries",
            "summary": "Interaction log entries, newest first; or follow new ones.",
            "parameters": _ENTRY_FILTERS,
            "responses": {"200": entries_answer, **_ERRORS},
        }
    }


def _entry_path() -> JsonObject:
    return {
        "get": {
            "operationId": "getEntry",
            "summary": "One entry.",
            "parameters": [_param("entry_no", {"type": "integer"}, "Entry number.", where="path")],
            "responses": {"200": _json("Entry", "The entry."), **_ERRORS, **_NOT_FOUND},
        }
    }


def _mime_path() -> JsonObject:
    return {
        "get": {
            "operationId": "getStoredMime",
            "summary": "The stored copy of a logged message (each download is recorded).",
            "parameters": [_param("id", {"type": "integer"}, "stored_message.id", where="path")],
            "responses": {
                "200": {
                    "description": "The message, as the storage folder holds it.",
                    "content": {"message/rfc822": {"schema": {"type": "string"}}},
                },
                **_ERRORS,
                "404": _json("Error", "Unknown id, or gone from the storage folder."),
                "503": _json("Error", "The mail server cannot be asked now (Retry-After)."),
            },
        }
    }


def _outcomes_path() -> JsonObject:
    return {
        "get": {
            "operationId": "getOutcomes",
            "summary": "Queue messages per outcome per UTC hour or day (administrators).",
            "parameters": [
                _param("since", _DATE_TIME, "Start (default: a day / 30 days before until)."),
                _param("until", _DATE_TIME, "End, exclusive (default: now)."),
                _param(
                    "interval",
                    {"type": "string", "enum": list(p.INTERVALS), "default": "hour"},
                    f"Bucket size; at most {p.MAX_BUCKETS} buckets per request.",
                ),
            ],
            "responses": {
                "200": _json("Outcomes", "Every bucket in the range, even empty ones."),
                **_ERRORS,
                "403": _json("Error", "Not an administrator."),
            },
        }
    }


def _openapi_path() -> JsonObject:
    return {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _ERRORS["401"],
            },
        }
    }


def _paths() -> JsonObject:
    return {
        "/api/v1/entries": _entries_path(),
        "/api/v1/entries/{entry_no}": _entry_path(),
        "/api/v1/stored-messages/{id}/mime": _mime_path(),
        "/api/v1/outcomes": _outcomes_path(),
        "/api/v1/openapi.json": _openapi_path(),
    }


def openapi_document(server_url: str) -> JsonObject:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emaillog interaction log API",
            "version": "1",
            "description": "Read the interaction log written by emaillog. Every request needs "
            "a bearer token (EMAILLOG_API_TOKENS_FILE) or a signed-in session.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }

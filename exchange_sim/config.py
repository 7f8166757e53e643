"""Simulator settings."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAILBOX = "queue@example.com"
DEFAULT_PORT = 8765


@dataclass
class SimConfig:
    mailboxes: list[str] = field(default_factory=lambda: [DEFAULT_MAILBOX])
    # Created in every mailbox (relative to Top of Information Store); "public:/A/B" in the
    # public-folder tree.
    folders: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)
    # Graph apps (client_id -> client_secret) for the token endpoint; when any are
    # registered the Graph face (/v1.0/) needs a bearer token issued to one of them.
    apps: dict[str, str] = field(default_factory=dict)
    auth_mode: str = "none"  # none, basic, ntlm, oauth2, any (needs exchange_sim.auth)
    # Length of one EWS "minute" in seconds (ConnectionTimeout, subscription lifetimes).
    minute_seconds: float = 60.0
    # Streaming keep-alive interval; EWS clients treat 45 s of silence as a dropped stream.
    keepalive_seconds: float = 30.0
    max_request_bytes: int = 32 * 1024 * 1024
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0

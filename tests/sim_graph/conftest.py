"""Fixtures for the Graph face's tests.

Pattern as tests/sim/conftest.py: the simulator runs in a background thread
(`SimulatorThread`); every JSON body its Graph face answers during a test is recorded and,
at teardown, validated against Microsoft's Graph v1.0 metadata with validate_graph.py.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exchange_sim import SimulatorThread
from tests.conftest import SHARED
from tests.sim.conftest import MAILBOX, QUEUE, STORAGE, message, sim_config

sys.path.insert(0, str(SHARED / "graph-conformance"))
import validate_graph

__all__ = ["MAILBOX", "QUEUE", "STORAGE", "GraphClient", "message"]


class GraphRecorder:
    """Collects (type spec, body) of every Graph JSON answer; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[tuple[str, Any]] = []

    def __call__(self, spec: str, body: object) -> None:
        with self.lock:
            self.bodies.append((spec, body))

    def specs(self) -> set[str]:
        with self.lock:
            return {spec for spec, _ in self.bodies}

    def invalid(self) -> list[tuple[str, list[str]]]:
        with self.lock:
            bodies = list(self.bodies)
        found = []
        for spec, body in bodies:
            errors = validate_graph.validate(body, spec)
            if errors:
                found.append((spec, errors[:3]))
        return found


class GraphClient:
    """Plain HTTP against the Graph face: paths relative to /v1.0/users/{mailbox}/."""

    def __init__(self, sim: SimulatorThread, mailbox: str = MAILBOX) -> None:
        self.root = f"{sim.graph_url}/users/{mailbox}"
        self.graph_url = sim.graph_url
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.root}/{path.lstrip('/')}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, body: object = None, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url(path), json=body, timeout=10, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.url(path), timeout=10)

    def folder_id(self, path: str) -> str:
        """Walk display names from the top of the mailbox, as a client must."""
        listing = "mailFolders"
        folder_id = ""
        for name in path.split("/"):
            found = self.get(listing, params={"$filter": f"displayName eq '{name}'"}).json()
            folder_id = found["value"][0]["id"]
            listing = f"mailFolders/{folder_id}/childFolders"
        return folder_id

    def delta_round(self, link: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
        """Follow nextLinks to the deltaLink: (entries, deltaLink)."""
        entries: list[dict[str, Any]] = []
        while True:
            page = self.get(link, **kwargs).json()
            entries += page["value"]
            if "@odata.deltaLink" in page:
                return entries, page["@odata.deltaLink"]
            link = page["@odata.nextLink"]


@pytest.fixture
def graph_recorder() -> GraphRecorder:
    return GraphRecorder()


@pytest.fixture
def sim(graph_recorder: GraphRecorder) -> Iterator[SimulatorThread]:
    """A running simulator; at teardown every Graph JSON body it sent must be valid."""
    with SimulatorThread(sim_config()) as running:
        running.graph.record_responses(graph_recorder)
        yield running
    assert graph_recorder.invalid() == []


@pytest.fixture
def graph(sim: SimulatorThread) -> GraphClient:
    return GraphClient(sim)

"""The reliability `Scenario` through the Graph face: `emaillog run` with
EMAILLOG_SOURCE=graph against exchange_sim (a registered app), the same invariants check as
for EWS. Item ids are Graph's, so the folders are read through `GraphFolders`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange_sim import SimulatorThread
from pipeline.config import Settings
from tests.reliability.mail import Delivered, Letter, deliver
from tests.reliability.process import RELIABILITY_SETTINGS
from tests.reliability.scenario import Scenario
from tests.service.harness import service_settings
from tests.sim_graph.conftest import GraphRecorder
from tests.source.graph_kit import APP_ID, APP_SECRET, graph_id, graph_values


class GraphFolders:
    """`invariants.Folders` over the simulator, with Graph ids."""

    def __init__(self, sim: SimulatorThread) -> None:
        self.sim = sim

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        return [
            item | {"id": graph_id(item["id"])} for item in self.sim.list_items(mailbox, folder)
        ]


class GraphScenario(Scenario):
    def __init__(self, sim: SimulatorThread, database_url: str, logs: Path) -> None:
        super().__init__(GraphFolders(sim), database_url, logs)  # type: ignore[arg-type]
        self.simulator = sim
        sim.graph.register_app(APP_ID, APP_SECRET)
        self.recorder = GraphRecorder()  # checked by the fixture at the end
        sim.graph.record_responses(self.recorder)

    def settings(self, **overrides: Any) -> Settings:
        # A slower poll and a shorter timeout than the source tests': a whole process runs.
        polling = {"graph_poll_seconds": 0.2, "graph_timeout_seconds": 10}
        values = {**RELIABILITY_SETTINGS, **graph_values(self.simulator), **polling, **overrides}
        return service_settings(self.database_url, **values)

    def deliver(self, letters: Sequence[Letter]) -> list[Delivered]:
        batch = []
        for item in letters:
            delivered = deliver(self.simulator, item)
            batch.append(
                Delivered(
                    delivered.name,
                    graph_id(delivered.item_id),
                    delivered.message_id,
                    delivered.expect,
                    delivered.entries,
                )
            )
        self.delivered += batch
        return batch

"""exchange_sim: an Exchange Web Services server for tests, demos and benchmarks.

It speaks the EWS shapes unmodified exchangelib 5.6 sends and expects (see
../shared/research/ews-exchangelib.md), holds mailboxes in memory, and has a /_sim/ side
channel for delivering mail and injecting faults. The service (pipeline/) never imports it.
"""

from exchange_sim.api import Simulator, SimulatorThread
from exchange_sim.config import SimConfig

__all__ = ["SimConfig", "Simulator", "SimulatorThread"]

"""exchange_sim: an Exchange Web Services server for tests, demos and benchmarks.

It speaks the EWS shapes unmodified exchangelib 5.6 sends and expects (see
../shared/research/ews-exchangelib.md), holds mailboxes in memory, and has a /_sim/ side
channel for delivering mail and injecting faults. The service (pipeline/) imports it only
in its demo.

Shape: `state.SimState` is the one place the simulator's state lives (store.py with its
records in model.py, faults.py, subscriptions.py, the open streams of streaming.py); the
aiohttp app carries it under `state.STATE`, and every other layer imports it, never each
other. `app.create_app` wires the rest: auth.py's middleware (Basic; NTLM in ntlm.py,
OAuth2 tokens in oauth.py), then middleware.py (request accounting, and the request-level
faults: latency, ErrorServerBusy, the connection limit), then ews.py's handler, which parses
the SOAP envelope and dispatches to ops/ (per-item faults are applied there). sideband.py
serves /_sim/ over HTTP; api.py's `Simulator` / `SimulatorThread` is the same control
surface in Python and the only one tests use.

dovecot.py is the other mail server tests, the IMAP demo and the IMAP benchmark run: not a
simulator but Debian's real Dovecot, started unprivileged with a generated configuration.
"""

from exchange_sim.api import Simulator, SimulatorThread
from exchange_sim.config import SimConfig
from exchange_sim.faults import FaultStatus
from exchange_sim.state import SimSnapshot

__all__ = ["FaultStatus", "SimConfig", "SimSnapshot", "Simulator", "SimulatorThread"]

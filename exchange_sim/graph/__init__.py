"""The Microsoft Graph face of the simulator, over the same mailbox store as the EWS face
(Exchange Online serves both from one mailbox).

    web.py       the aiohttp entry: auth (bearer tokens of registered apps), faults
                 (429/503 with Retry-After), the per-app-and-mailbox concurrency limit,
                 latency, recording; then `router.dispatch`
    router.py    GraphRequest/GraphResponse, the route table, error bodies
    folders.py   mailFolders, childFolders
    messages.py  messages: get ($select, $expand of singleValueExtendedProperties), list,
                 find by internetMessageId, $value, move, copy, delete, permanentDelete
    delta.py     messages/delta with $skiptoken/$deltatoken, expired tokens (410)
    batch.py     JSON batching ($batch, at most 20 requests, dependsOn)
    render.py    store records -> Graph JSON (message, mailFolder), Graph ids
    query.py     OData query options: $select, $expand, $filter, $top, $skip
    webhooks.py  subscriptions, the validation handshake, notification delivery
    state.py     GraphState: faults, limits, subscriptions, recorder (plain data)
    control.py   GraphControl: the Python API (Simulator.graph)
    sideband.py  the same under /_sim/graph/ (for exchange-sim on its own)

Nothing is re-exported here: exchange_sim.state imports graph.state, and this package
must load without exchange_sim.state. Responses follow Microsoft's Graph v1.0 metadata
(checked in tests with validate_graph.py).
"""

from __future__ import annotations

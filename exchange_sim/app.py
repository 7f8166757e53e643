"""The aiohttp application: wires the state, the middleware and the routes together.

Routes: the SOAP endpoint at /EWS/Exchange.asmx (ews.py), the OAuth2 token endpoint
(oauth.py, used in auth modes oauth2 and any, and by Graph apps), the Graph face under
/v1.0/ (graph/) and the /_sim/ side channel (sideband.py).
Middleware, outermost first: authentication (auth.py), then accounting and injected faults
(middleware.py).
"""

from __future__ import annotations

from collections import ChainMap
from typing import Any, cast

from aiohttp import web

from exchange_sim.auth import AuthConfig, auth_middleware
from exchange_sim.config import SimConfig
from exchange_sim.ews import EWS_PATH, ews_handler
from exchange_sim.graph.sideband import add_graph_sideband_routes
from exchange_sim.graph.web import add_graph_routes
from exchange_sim.middleware import accounting_middleware, faults_middleware
from exchange_sim.oauth import add_token_endpoint
from exchange_sim.sideband import add_sideband_routes
from exchange_sim.state import STATE, SimState


def create_app(config: SimConfig | None = None, state: SimState | None = None) -> web.Application:
    config = config or (state.config if state else SimConfig())
    state = state or SimState(config)
    app = web.Application(client_max_size=config.max_request_bytes)
    app[STATE] = state
    auth_config = AuthConfig(mode=config.auth_mode, users=dict(config.users))
    app.middlewares.append(cast(Any, auth_middleware(auth_config)))
    app.middlewares.append(accounting_middleware)
    app.middlewares.append(faults_middleware)
    # The token endpoint grants EWS users (mode oauth2) and Graph apps; apps registered
    # later (GraphControl.register_app) are seen through the live ChainMap.
    clients = ChainMap(config.apps, dict(auth_config.users))
    add_token_endpoint(app, clients, auth_config.token_lifetime_seconds)
    add_graph_routes(app)
    add_graph_sideband_routes(app)
    app.router.add_post(EWS_PATH, ews_handler)
    # Exchange answers any casing of the path.
    app.router.add_post(EWS_PATH.lower(), ews_handler)
    add_sideband_routes(app)
    return app

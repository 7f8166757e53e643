"""Rendering a page: the Jinja2 environment (templates shipped in the package, autoescape
on) and the application key the page handlers read their dependencies from.

It imports only `identity` (not `auth`), so the sign-in pages of auth's modules may render
with it too without an import cycle.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from aiohttp import web

from pipeline.web.deps import WebDeps
from pipeline.web.identity import csrf_token, current_principal

DEPS = web.AppKey("deps", WebDeps)


@cache
def environment() -> jinja2.Environment:
    """One environment per process: it caches compiled templates."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.web", "templates"),
        autoescape=True,  # a subject like `<script>` is shown, never run
        undefined=jinja2.StrictUndefined,  # a typo in a template fails a test, not a page
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page: `template` with `context`, who is signed in (None on public pages such as
    /signin) and the CSRF token (the sign-out form in the header posts it)."""
    html = (
        environment()
        .get_template(template)
        .render(
            principal=current_principal(request),
            csrf_token=csrf_token(request),
            request_path=request.path,
            **context,
        )
    )
    return web.Response(text=html, status=status, content_type="text/html")


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, message=message)

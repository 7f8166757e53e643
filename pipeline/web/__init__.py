"""The interaction log for people: the web UI and the REST API (`/api/v1`), on one aiohttp
application served by `emaillog run` (EMAILLOG_UI_PORT) and by `emaillog ui` on its own.

    app.py       build_web_app(): auth middleware + API + pages + static assets
    auth.py      who is asking: token or OpenID Connect sign-in, sessions, CSRF, CSP
    api.py       /api/v1 handlers; openapi.py the OpenAPI document they match
    pages.py     the server-rendered pages (Jinja2 templates in templates/, CSS in static/);
                 forms.py parses the search form, render.py renders a template
    ops_page.py  the administrators' operations page; charts.py lays out its SVG chart
    mime.py      mime_fetcher(): a stored message's bytes from the source's storage folder

It reads the database through `pipeline.store.entries` and asks the mail source only to
fetch a stored message (`MailSource.fetch_stored_mime`).
"""

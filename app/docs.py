"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served from local files, never from a CDN.

The scripts and styles are the ones the ``fastapi-offline`` package installs; they are served
under ``/docs-assets/``. The two pages, their assets and ``/openapi.json`` need no API key: the
schema describes the routes and holds no data, and Swagger UI's "Authorize" sends ``X-API-Key``
with the calls made from the page, which are checked like any other (see SECURITY.md).

Both pages carry a Content-Security-Policy that lets them load and call only this server:
ReDoc 2 always shows a logo from its vendor's CDN, which the policy stops in the browser.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # FastAPI's pages start the UI with inline code
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",  # ReDoc's search index
        "connect-src 'self'",
        "frame-ancestors 'self'",
    )
)
SWAGGER_PARAMETERS = {
    "validatorUrl": None,  # Swagger UI's online validator would be a request to elsewhere
    "persistAuthorization": False,  # the key lives only as long as the page
    "tryItOutEnabled": True,
}


SWAGGER_FILES = {
    "swagger_js_url": f"{ASSETS}/swagger-ui-bundle.js",
    "swagger_css_url": f"{ASSETS}/swagger-ui.css",
    "swagger_favicon_url": f"{ASSETS}/favicon.png",
}
REDOC_FILES = {
    "redoc_js_url": f"{ASSETS}/redoc.standalone.js",
    "redoc_favicon_url": f"{ASSETS}/favicon.png",
    "with_google_fonts": False,
}


def add_docs(app: FastAPI, title: str) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets for ``app``; ``openapi_url`` must be set."""
    folder = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(folder)), name="docs-assets")
    schema = app.openapi_url

    def local(page: HTMLResponse) -> HTMLResponse:
        return HTMLResponse(page.body, headers={"Content-Security-Policy": CSP})

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return local(
            get_swagger_ui_html(
                openapi_url=schema,
                title=f"{title} · API docs",
                swagger_ui_parameters=SWAGGER_PARAMETERS,
                **SWAGGER_FILES,
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return local(
            get_redoc_html(openapi_url=schema, title=f"{title} · API reference", **REDOC_FILES)
        )

"""`/docs` (Swagger UI) and `/redoc` (ReDoc), served with their scripts from this machine.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a host without internet they
render blank. The assets come from the `fastapi-offline` package (a maintained bundle of
swagger-ui-dist and redoc, installed as a dependency, never copied into this tree) and are served
under `/docs/assets`; the pages point there. Like `/openapi.json`, none of this needs a token:
it describes the API, it does not call it (Swagger UI's Authorize button takes the admin token
for the calls a user tries from the page).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"


def assets_dir() -> Path:
    """The folder of the installed `fastapi_offline` package that holds the bundles."""
    folder = Path(str(files("fastapi_offline") / "static"))
    missing = [
        n for n in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON) if not (folder / n).is_file()
    ]
    if missing:
        raise RuntimeError(
            f"the API documentation assets {missing} are not in {folder}: reinstall Slipway "
            "(pip install --force-reinstall fastapi-offline)"
        )
    return folder


def install(app: FastAPI) -> None:
    """Mount the assets and the two pages; `app` must be made with docs_url=redoc_url=None."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    spec, title = app.openapi_url or "/openapi.json", f"{app.title} API"

    def swagger_page() -> HTMLResponse:
        # No validator badge: Swagger UI would fetch it from validator.swagger.io. The token
        # typed into Authorize survives a page reload.
        parameters = {"persistAuthorization": True, "validatorUrl": None}
        return get_swagger_ui_html(
            openapi_url=spec, title=title, swagger_ui_parameters=parameters,
            swagger_js_url=_at(SWAGGER_JS), swagger_css_url=_at(SWAGGER_CSS),
            swagger_favicon_url=_at(FAVICON),
        )  # fmt: skip

    def redoc_page() -> HTMLResponse:
        # ReDoc's default also fetches web fonts from a CDN.
        return get_redoc_html(
            openapi_url=spec, title=title, redoc_js_url=_at(REDOC_JS),
            redoc_favicon_url=_at(FAVICON), with_google_fonts=False,
        )  # fmt: skip

    app.add_api_route("/docs", swagger_page, include_in_schema=False)
    app.add_api_route("/redoc", redoc_page, include_in_schema=False)


def _at(asset: str) -> str:
    return f"{ASSETS_PATH}/{asset}"

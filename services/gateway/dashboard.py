"""The dashboard: a single-page app in plain JavaScript, served by the gateway.

The page at ``/`` loads its scripts and styles from ``/ui``; everything it shows comes
from the HTTP API on the same origin (``/jobs`` here, ``/models`` from the predictor).
Nothing is fetched from elsewhere, so it works on a cluster without internet access.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
UI_PREFIX = "/ui"
# The files are small and served on the cluster's network: revalidating each load
# (a 304 when unchanged) costs little and never runs scripts of an older release.
REVALIDATE = {"Cache-Control": "no-cache"}

# StaticFiles takes types from the mimetypes module, which reads the host's tables
# (/etc/mime.types, the Windows registry); some map .js to text/plain, and browsers
# refuse to run a module script served as that.
for _suffix, _media_type in {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
}.items():
    mimetypes.add_type(_media_type, _suffix)


class _RevalidatedFiles(StaticFiles):
    """StaticFiles whose answers tell the browser to check for a newer file each time."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(REVALIDATE)
        return response


def add_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's page at ``/`` and its scripts and styles under ``/ui``."""
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=REVALIDATE)

    app.mount(UI_PREFIX, _RevalidatedFiles(directory=STATIC_DIR), name="ui")

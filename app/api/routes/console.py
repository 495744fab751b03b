"""The browser console: static files (app/console/) served by the API itself, under a strict CSP.

The console is plain HTML, JS and CSS: nothing is built, nothing comes from another origin. It holds no
secrets and has no powers of its own; every call it makes is an API call with the key the user typed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import not_found

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
# No inline script or style, nothing from another origin; plots arrive as blob: URLs (fetched with the key).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ASSETS = {
    "console.js": "text/javascript",
    "datasets.js": "text/javascript",
    "jobs.js": "text/javascript",
    "review.js": "text/javascript",
    "models.js": "text/javascript",
    "console.css": "text/css",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def console_page() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/console/{name}")
def console_asset(name: str) -> FileResponse:
    if name not in _ASSETS:  # a fixed list: the name never reaches the file system
        raise not_found("file")
    return FileResponse(CONSOLE_DIR / name, media_type=_ASSETS[name], headers=_HEADERS)

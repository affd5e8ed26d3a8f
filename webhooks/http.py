"""Small HTTP helpers shared by the routes: bounded body reads, errors, public URLs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_limited_body(request: Request, limit: int) -> bytes | Response:
    """The raw body, or 413 before parsing anything when it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return error(413, f"body larger than {limit} bytes")
        except ValueError:
            return error(400, "invalid Content-Length")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return error(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def public_url(public_base_url: str, request: Request) -> str:
    """The URL the provider signed: our public base (behind TLS proxies) + path + query."""
    # From the ASGI scope directly: building ``request.url`` costs more than the signature check's HMAC.
    # (The same path Starlette's URL gives: the scope's path with ?, # and \\ escaped.)
    path = request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    url = public_base_url.rstrip("/") + path
    query = request.scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    return url

"""The benchmark's reference: a bare Starlette endpoint that parses the same Twilio form and answers TwiML."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def sms(request: Request) -> Response:
    form = await request.form()
    if "MessageSid" not in form:
        return Response(status_code=400)
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response/>', media_type="text/xml")


app = Starlette(routes=[Route("/webhooks/twilio/sms", sms, methods=["POST"])])

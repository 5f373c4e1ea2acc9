"""Typed keys for what the aiohttp application and requests carry."""

from aiohttp import web

# The server.Context of the running sandbox (state, keys, TLS files, ports).
CTX = web.AppKey("ctx", object)
# The Graph request-id of the current request.
REQUEST_ID = web.RequestKey("request_id", str)

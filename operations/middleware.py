"""The request id (issue 12, item 7) on the response, in `X-Request-ID`, so that a
user's report or a proxy's log leads to the product's lines for that request.

The id itself is chosen when the request starts (config/logs.py, request_started):
the incoming `X-Request-ID` when it is sane (1 to 64 characters of A-Z a-z 0-9 . _ -),
a new one otherwise.
"""

from config.logs import incoming_or_new_request_id, request_id

HEADER = "X-Request-ID"


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        current = request_id.get()
        if current is None:  # a handler that sent no request_started (ASGI, tests)
            current = incoming_or_new_request_id(request.headers.get(HEADER))
            request_id.set(current)
        request.request_id = current
        response = self.get_response(request)
        response[HEADER] = current
        return response

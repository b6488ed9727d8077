"""The HTTP API: FastAPI app, routes, auth and the one error format. HTTP only; the queue layer
does the work."""

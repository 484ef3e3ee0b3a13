"""The gateway: Starlette HTTP API (and, later, websocket sessions) on uvicorn."""

"""The gateway: Starlette HTTP API and websocket sessions on uvicorn.

app        create_app: routes, middleware, errors to bodies
services   what the process owns for its lifetime (the lifespan)
ws         GET /ws/documents/{doc_id}: the shell around app.protocol.Session
fanout     one channel per document: commit tap, Redis stream reader, healer
presence   presence coalesced per document, across processes by Redis pub/sub
liveness   when presence heard from another process expires (that process died)
members    membership changes to live sessions (4403, the next op's role), by pub/sub
pubsub     one Redis pub/sub subscription kept alive (presence and members share it)
quotas     per-user limits in this process: connections, an op bucket
server     uvicorn run from our code, websocket sessions drained first
documents, assets, system, openapi   the HTTP endpoints; access, auth, bodies,
           responses, middleware   what they share
"""

"""``python -m app chaos``: a whole deployment on loopback under load and random faults.

The run owns everything it touches: a scratch PostgreSQL cluster and a Redis server
of its own, the app processes (gateways, relay, read workers, snapshotter), a TCP proxy
in front of each service so connectivity can be cut and restored, and the websocket
clients that drive the load. Afterwards it checks DESIGN.md's invariants (I1..I6) and
prints what it injected and what it found (docs/reliability.md, "Chaos").
"""

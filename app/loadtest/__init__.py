"""The load-test harness: ``python -m app loadtest SCENARIO --url ...`` (docs/loadtest.md).

It speaks PROTOCOL.md only (HTTP to set up and read back, websockets to load), so it
can be pointed at any Atelier deployment; it imports nothing of the server but the
token minting (``app.tokens``) and the error types. Modules:

    cli        the command line (also the ``atelier-loadtest`` script)
    scenarios  hot-doc, many-docs, join-storm, presence, reconnect: documents and clients
    runner     setup over HTTP, the client processes, progress, the checks, the result
    client     a client process: sans-I/O websockets on one uvloop, tallies, checks' data
    hist       a mergeable log-bucket latency histogram
    procstat   CPU and RSS from /proc, the machine's description
    http       the few HTTP calls, on urllib
    report     the self-contained HTML report (inline SVG)
"""

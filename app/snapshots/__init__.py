"""The snapshotter: a process of its own that writes document snapshots every N events.

Snapshots are an optimisation, never needed for correctness. Encoding a large
document is tens of milliseconds of CPU; done on the gateway's event loop it stalls
every op in flight (the write benchmark's p99 went from 2 ms to 20 ms), so it happens
here, in another process, following the log.
"""

from app.snapshots.snapshotter import Snapshotter

__all__ = ["Snapshotter"]

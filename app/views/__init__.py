"""The read side's views: projections, their SQL, time travel, rebuild and verify
(docs/readside.md). Everything here is derived from the event store (DESIGN.md I5)."""

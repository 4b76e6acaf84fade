"""Benchmarks: run by hand or ``make bench``; they print their figures and never run as timed tests.

- ``python -m bench.e2e``: end-to-end throughput, latency, CPU and memory of the pipeline beside a raw
  reference pipe (see ``docs/benchmarks.md``).
- ``python -m bench.timeline_api``: ``GET /v1/customers/{id}/timeline`` under 100 concurrent clients beside
  the same query run directly in PostgreSQL.
"""

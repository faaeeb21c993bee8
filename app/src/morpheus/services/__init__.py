"""The application layer: what the sites and the command line do, in terms of the
database, the queue, ingest and storage.

The use cases (submit a novel, read, cancel or retry a comic, the queue's overview, who
is asking) and what the JSON API, the storefront, the dashboard and the command line
share: the application's context, rate limits, the reading of a submission, answers of
bytes, the dashboard's sessions. The sites' routes call these functions and never reach
PostgreSQL or Redis themselves.
"""

"""The application layer: what the sites and the command line do, in terms of the
database, the queue, ingest and storage.

The use cases (submit a novel, read, cancel or retry a comic, the queue's overview, who
is asking), with the application's context and the rate limiter they work with. The
sites' routes call these functions and never reach PostgreSQL or Redis themselves.
"""

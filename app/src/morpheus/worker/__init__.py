"""The queue worker: the BullMQ worker runtime and the comic job it runs."""

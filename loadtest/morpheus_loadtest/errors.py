"""The one kind of failure the load test reports: what went wrong and what to do next."""

from __future__ import annotations


class LoadTestError(Exception):
    """A failure with the next step a person should take."""

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(what)
        self.hint = hint

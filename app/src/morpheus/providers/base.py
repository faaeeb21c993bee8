"""What every panel provider offers, and how it fails."""

from __future__ import annotations

from typing import Protocol

from morpheus.pipeline.script import Panel


class ProviderError(Exception):
    """A panel could not be rendered.

    ``retryable`` says whether the same request may succeed later (an outage, a rate
    limit, a time-out) or never will (a rejected key, a malformed answer).
    """

    def __init__(self, message: str, *, retryable: bool, outcome: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.outcome = outcome  # a short label for metrics: timeout, job_failed, ...


class PanelProvider(Protocol):
    name: str

    def render(self, panel: Panel, width: int, height: int) -> bytes:
        """Return the panel as a PNG image of ``width`` x ``height`` pixels."""
        ...

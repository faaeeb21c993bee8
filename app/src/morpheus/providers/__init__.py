"""Panel providers: something that turns a :class:`~morpheus.pipeline.script.Panel`
into a PNG. ``local`` draws with Pillow; ``runpod`` asks a RunPod serverless endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from morpheus.providers.base import PanelProvider, ProviderError
from morpheus.providers.local import LocalProvider

if TYPE_CHECKING:
    from morpheus.settings import Settings

__all__ = ["LocalProvider", "PanelProvider", "ProviderError", "get_provider"]


def get_provider(settings: Settings) -> PanelProvider:
    """The provider the settings choose (``local`` unless told otherwise)."""
    name = (getattr(settings, "provider", None) or "local").lower()
    if name == "local":
        return LocalProvider()
    if name == "runpod":
        from morpheus.providers.runpod import runpod_provider_from_settings

        return runpod_provider_from_settings(settings)
    raise ValueError(f"unknown panel provider {name!r}: choose 'local' or 'runpod'")

"""The HTTP side of Morpheus: the JSON API and the host-routed application."""

from morpheus.api.app import AppConfigError, create_app

__all__ = ["AppConfigError", "create_app"]

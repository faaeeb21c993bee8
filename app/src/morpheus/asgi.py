"""The ASGI application for servers: ``morpheus.asgi:app`` (settings from the env)."""

from morpheus.app import create_app
from morpheus.settings import get_settings

app = create_app(get_settings())

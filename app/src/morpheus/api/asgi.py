"""The ASGI application for servers: ``morpheus.api.asgi:app`` (settings from the env)."""

from morpheus.api import create_app
from morpheus.settings import get_settings

app = create_app(get_settings())

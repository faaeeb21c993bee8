"""Morpheus turns novels into comics."""

__version__ = "0.1.0"

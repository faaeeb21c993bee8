"""Test doubles of the services the app calls: never installed, never in the image."""

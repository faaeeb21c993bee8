"""The JSON API for programmatic clients: its routes, API keys and error shape; and the
health routes and middleware the application (:mod:`morpheus.app`) wraps every site in."""

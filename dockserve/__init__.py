"""dockserve: a Docker Engine API daemon on Twisted."""

__version__ = "0.1.0"

#: The Docker Engine API version this daemon speaks by default.
API_VERSION = "1.50"
#: The oldest API version a client may ask for.
MIN_API_VERSION = "1.24"

__all__ = ["API_VERSION", "MIN_API_VERSION", "__version__"]

"""The client's version (also in pyproject.toml), sent as the ``tool`` of its writes."""

__version__ = "0.1.0"

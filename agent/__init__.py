"""The Kraken agent: one daemon per host that runs kernel containers for the manager."""

__version__ = "0.1.0"

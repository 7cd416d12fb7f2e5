"""The version, in one place: setuptools reads it for the package metadata at build time.

A constant rather than a lookup in the installed metadata, because every command logs it when
it starts, and ``importlib.metadata`` alone costs tens of milliseconds of a command's start-up.
"""

__version__ = "0.1.0"

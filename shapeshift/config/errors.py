"""The one exception a bad configuration raises, importable without Lightning (console/errors.py
catches it)."""


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the problem and the choices."""

"""Email logging: turns boundary-crossing mail into an interaction log, exactly once."""

__version__ = "0.1.0"

"""The errors every room may raise, at the bottom of the stack so that every room can."""


class ConfigError(ValueError):
    """A sweep file that cannot run. The message names field, value and what is allowed."""

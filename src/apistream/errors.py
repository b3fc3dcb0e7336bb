"""The one error base class: anything raised as ApiStreamError is shown as a clean message."""


class ApiStreamError(Exception):
    """A problem the user can fix (bad config, missing input, ...), shown without a traceback."""

    exit_code = 1


class ConfigError(ApiStreamError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2

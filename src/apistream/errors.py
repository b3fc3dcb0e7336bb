"""The one error base class: anything raised as ApiStreamError is shown as a clean message."""


class ApiStreamError(Exception):
    """A problem the user can fix (bad config, missing input, ...), shown without a traceback."""

    exit_code = 1


class ConfigError(ApiStreamError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2


class UsageError(ApiStreamError):
    """A command-line option is invalid; the message names it."""

    exit_code = 2


class ReconciliationError(ApiStreamError):
    """The events lake and the stream's metrics differ (`apistream batch`): the data are
    wrong, so running again will not help."""

    exit_code = 3

"""The one exception type for bad input."""


class UserError(Exception):
    """Bad input (a file, a key, a setting). The message names what was wrong and what was expected;
    the command line prints it without a traceback and exits with status 2."""

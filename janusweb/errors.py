"""The one error type that ends a command with a single clear line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong model type, hub id...). Printed as one line, exit 2."""

    exit_code = 2

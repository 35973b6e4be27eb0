"""Errors a user can fix by changing their input, as opposed to bugs (which keep their traceback)."""

from __future__ import annotations


class InputDataError(ValueError):
    """Input data that cannot be used as it is: unreadable file, missing column, invalid UTF-8, ..."""

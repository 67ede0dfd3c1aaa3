"""The one error `edgeplane import` reports: what to change in the project."""


class WranglerImportError(Exception):
    """The project cannot be imported; the message says what to change."""


"""The one error `edgeplane import` reports: what to change in the project."""


class WranglerImportError(Exception):
    """The project cannot be imported; the message says what to change. `warnings` are
    what the import had found to say before it stopped; the command prints them too."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.warnings: list[str] = []

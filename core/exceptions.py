"""Domain errors. The API's exception handler turns these into 4xx responses."""


class ApplicationError(Exception):
    """An error the caller can fix; its message is shown to them."""

    status_code = 400

    def __init__(self, message: str, *, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFoundError(ApplicationError):
    status_code = 404

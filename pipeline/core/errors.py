"""Slipway's one error tree; foreign exceptions are mapped where they enter.

    SlipwayError                      every error Slipway raises on purpose
    ├── InvalidInput (permanent)      bad names, specs, sources: the user must change something
    │   ├── InvalidName
    │   ├── InvalidSpec               carries the field path that is wrong
    │   └── InvalidSource
    ├── NotFound (permanent)          a service, revision, build or image that does not exist
    ├── Conflict (permanent)          the request contradicts current state
    ├── BuildFailed (permanent)       the user's build failed; carries the log tail
    │   └── BuildCancelled            stopped by `slipway builds cancel`
    ├── RevisionFailed (permanent)    the revision never became ready; carries the reason
    └── Unavailable (retryable)       a dependency is down: Docker Engine, registry, HAProxy

The API layer turns these into HTTP statuses (400, 404, 409, 422, 503) with the message as the
body; the CLI prints the message. Every message names the problem and, where there is one, the fix.
"""

from __future__ import annotations


class SlipwayError(Exception):
    """Base of every error Slipway raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SlipwayError):
    """The request can never succeed as sent."""


class InvalidName(InvalidInput):
    pass


class InvalidSpec(InvalidInput):
    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class InvalidSource(InvalidInput):
    pass


class NotFound(SlipwayError):
    pass


class Conflict(SlipwayError):
    pass


class BuildFailed(SlipwayError):
    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class BuildCancelled(BuildFailed):
    pass


class RevisionFailed(SlipwayError):
    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unavailable(SlipwayError):
    """A dependency is down; the same call may succeed later."""

    retryable = True

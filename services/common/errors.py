"""The two ways a message can fail, and what the stage loop does with each."""

from collections.abc import Iterator
from contextlib import contextmanager


class BadInput(Exception):
    """The message itself is wrong: it goes to the dead-letter topic, the service goes on.

    `reason` is a short class for metrics and filtering ("undecodable_protobuf",
    "unknown_recipe", ...); the message says what was wrong and with which input.
    """

    def __init__(self, reason: str, detail: str, frame_id: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.frame_id = frame_id


@contextmanager
def about_frame(frame_id: str) -> Iterator[None]:
    """Every BadInput raised inside names this frame, so its dead letter can be traced."""
    try:
        yield
    except BadInput as err:
        err.frame_id = err.frame_id or frame_id
        raise


class Transient(Exception):
    """A dependency is down or slow: the input is not committed and is redone after a backoff."""

"""Decoding of untrusted message bytes into protobuf, with reasons a DLQ reader can act on."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from services.common.errors import BadInput
from services.common.topics import SCHEMA_VERSION

M = TypeVar("M", bound=Message)


def decode(cls: type[M], data: bytes | None) -> M:
    if not data:
        raise BadInput("empty_message", f"empty {cls.DESCRIPTOR.full_name} message")
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadInput(
            "undecodable_protobuf", f"{len(data)} bytes are not a {cls.DESCRIPTOR.full_name}: {exc}"
        ) from exc
    version = getattr(msg, "schema_version", SCHEMA_VERSION)
    frame_id = msg.context.frame_id if msg.HasField("context") else ""  # type: ignore[attr-defined]
    if version != SCHEMA_VERSION:
        raise BadInput(
            "unknown_schema_version",
            f"{cls.DESCRIPTOR.full_name} schema_version {version}, this service reads {SCHEMA_VERSION}",
            frame_id,
        )
    if not frame_id:
        raise BadInput("missing_frame_id", f"{cls.DESCRIPTOR.full_name} without context.frame_id")
    return msg


def stamp(msg: Message, stage: str, received_ns: int, sent_ns: int, instance: str) -> None:
    s = msg.stamps.add()  # type: ignore[attr-defined]
    s.stage, s.received_unix_ns, s.sent_unix_ns, s.instance = stage, received_ns, sent_ns, instance

"""``multipart/form-data`` bodies (audio uploads): fields and files, no dependency.

Parsed by hand rather than with :mod:`email`, whose parser is made for text
and mail line endings; an upload's bytes must come through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One file part of a form."""

    filename: str
    content_type: str
    data: bytes


def _params(header_value: str, name: str) -> Message:
    """``header_value`` parsed as a MIME header, to read its parameters."""
    message = Message()
    message[name] = header_value
    return message


def parse_form(content_type: str, body: bytes) -> dict[str, str | UploadedFile] | None:
    """The fields (text) and files of a form; None if it is not ``multipart/form-data``.

    A later part with the same name replaces an earlier one, like the
    single-valued fields the audio APIs take.
    """
    header = _params(content_type, "content-type")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return None
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        return None
    form: dict[str, str | UploadedFile] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return None
        content = content.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = _params(headers.get("content-disposition", ""), "content-disposition")
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        filename = disposition.get_param("filename", header="content-disposition")
        if isinstance(filename, str):
            part_type = headers.get("content-type", "application/octet-stream")
            form[name] = UploadedFile(filename, part_type, content)
        else:
            form[name] = content.decode("utf-8", errors="replace")
    return form

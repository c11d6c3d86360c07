"""A body's Content-Encoding undone as it streams, each step bounded by the room left.

The transport decodes answers itself (its session has aiohttp's
``auto_decompress`` off). aiohttp 3.14 paces its own decompression against
zip bombs, and a deflate stream cut short whose last bytes come apart from
the headers then leaves the reader waiting: the answer ended, yet neither
its end nor the decoding error reaches the reader (1 request in 3 on
loopback), so the probe only ends at its deadline, as a timeout. Here the
end of the answer is the end, and a stream that stops short says so.
"""

from __future__ import annotations

import zlib

#: What the transport asks servers for: the encodings decoded here.
ACCEPTED = "gzip, deflate"


class Undecodable(ValueError):
    """The body is not what its Content-Encoding says; the message says why."""


class Decoder:
    """Decodes one body. ``feed`` returns at most ``room + 1`` bytes, so a body that
    inflates past its cap is found out without inflating it further."""

    def __init__(self, encoding: str | None) -> None:
        self.encoding = (encoding or "identity").strip().lower()
        self._inflater: zlib._Decompress | None = None
        if self.encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding != "deflate" and self.encoding != "identity":
            raise Undecodable(f"unsupported content-encoding {self.encoding!r}")

    def feed(self, data: bytes, room: int) -> bytes:
        if self.encoding == "identity":
            return data
        if self._inflater is None:  # deflate: zlib's framing, or raw as some servers send it
            self._inflater = zlib.decompressobj(
                zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
            )
        if self._inflater.eof:
            return b""  # bytes after the end of the stream: nothing more to decode
        try:
            return self._inflater.decompress(data, max(room, 0) + 1)
        except zlib.error as error:
            raise Undecodable(f"{self.encoding}: {error}") from None

    def end(self) -> None:
        """The answer ended: a stream not complete by then was cut short."""
        if self.encoding != "identity" and not (self._inflater and self._inflater.eof):
            raise Undecodable(f"{self.encoding}: the compressed stream ends early")


def _zlib_header(data: bytes) -> bool:
    # RFC 1950: compression method 8, and the first two bytes a multiple of 31.
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0

"""The transport's own decoding of Content-Encoding: each step bounded, a stream
cut short named as such (the end-to-end cases are in test_client.py)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from sandbox_exporter.content_encoding import Decoder, Undecodable

TEXT = b'{"a": "' + b"x" * 100_000 + b'"}'


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", _raw_deflate(TEXT)),  # what some servers send as "deflate"
        ("identity", TEXT),
        (None, TEXT),
    ],
    ids=["gzip", "x-gzip", "deflate", "raw-deflate", "identity", "none"],
)
def test_a_body_decodes_in_pieces(encoding, body) -> None:
    decoder = Decoder(encoding)
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    decoded = b"".join(decoder.feed(piece, 10**9) for piece in pieces)
    decoder.end()
    assert decoded == TEXT


def test_a_bomb_is_never_inflated_past_the_room_left() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB from about 50 KB
    decoder = Decoder("gzip")
    assert len(decoder.feed(bomb, 1000)) == 1001  # one byte past the cap: refused


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_stream_cut_short_says_so_at_the_end(encoding) -> None:
    whole = gzip.compress(TEXT) if encoding == "gzip" else zlib.compress(TEXT)
    decoder = Decoder(encoding)
    decoder.feed(whole[: len(whole) // 2], 10**9)
    with pytest.raises(Undecodable, match=f"{encoding}: the compressed stream ends early"):
        decoder.end()


def test_bytes_that_are_not_the_encoding_are_refused() -> None:
    with pytest.raises(Undecodable, match="gzip: "):
        Decoder("gzip").feed(b"not gzip at all", 1000)


def test_an_encoding_not_asked_for_is_named() -> None:
    with pytest.raises(Undecodable, match="unsupported content-encoding 'br'"):
        Decoder("br")

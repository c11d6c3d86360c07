"""Checking basic-auth credentials against bcrypt hashes (``--web.config.file``).

bcrypt is slow on purpose (tens of milliseconds a check): each
(user, hash, password) outcome is remembered under a SHA-256 of the three,
so a scrape every few seconds costs one check, not one per scrape, and no
password is kept in memory in the clear. The web layer asks :meth:`known`
on the event loop and runs :meth:`check` on one worker thread, so a burst of
bad passwords costs that one thread, never the loop nor every core.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os
import threading
from collections.abc import Mapping

# bcrypt only ever reads this many bytes of a password (htpasswd too).
BCRYPT_MAX_PASSWORD_BYTES = 72


class PasswordCheck:
    CACHE_SIZE = 256

    def __init__(self, users: Mapping[str, str]) -> None:
        # Imported here: a daemon without basic auth never needs bcrypt (0.5 MiB).
        import bcrypt

        self._users = [(name.encode(), hashed.encode()) for name, hashed in users.items()]
        # Checked when the user is unknown, so that an unknown name takes as
        # long as a wrong password and user names cannot be guessed by timing
        # (exactly so when every user's hash has the same cost, as htpasswd
        # makes them unless told otherwise).
        cost = min((int(h.decode()[4:6]) for _, h in self._users), default=4)
        self._decoy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(cost))
        self._cache: collections.OrderedDict[bytes, bool] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _key(self, user: bytes, password: bytes) -> tuple[bytes, bytes | None, bytes]:
        # Compare against every name, without stopping at a match, so the
        # time taken does not depend on which name (if any) matched.
        found = None
        for name, hashed in self._users:
            if hmac.compare_digest(name, user):
                found = hashed
        checked = found if found is not None else self._decoy
        return checked, found, hashlib.sha256(b"\0".join((user, checked, password))).digest()

    def known(self, user: bytes, password: bytes) -> bool | None:
        """The remembered outcome for these credentials, or None if never checked."""
        _, _, key = self._key(user, password)
        with self._lock:
            outcome = self._cache.get(key)
            if outcome is not None:
                self._cache.move_to_end(key)
            return outcome

    def check(self, user: bytes, password: bytes) -> bool:
        """Run bcrypt (blocking, slow) and remember the outcome."""
        import bcrypt

        checked, found, key = self._key(user, password)
        try:
            matches = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD_BYTES], checked)
        except ValueError:
            matches = False
        accepted = matches and found is not None
        with self._lock:
            self._cache[key] = accepted
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return accepted


def basic_credentials(header: str) -> tuple[bytes, bytes] | None:
    """(user, password) of an ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error is one
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password

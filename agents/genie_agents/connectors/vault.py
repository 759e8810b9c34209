"""Users' tokens for outside services, encrypted at rest with Fernet (from ``cryptography``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["TokenVault"]

FORMAT_VERSION = 1


def _fernet(key: bytes | str) -> Fernet:
    try:
        from cryptography.fernet import Fernet
    except ImportError:  # an optional extra: say which
        raise ImportError(
            "TokenVault needs the 'cryptography' package: pip install 'genie-bus[portfolio]'"
        ) from None
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ValueError(
            "a TokenVault key is 32 url-safe base64-encoded bytes (TokenVault.generate_key())"
        ) from None


class TokenVault:
    """One JSON file of ``{user id: Fernet token}``: each service token is encrypted and
    authenticated (AES-128-CBC with HMAC-SHA256) under ``key``, so the file alone reveals
    nothing and a changed byte is detected. Writes replace the file atomically, readable by its
    owner only (mode 0600). Keep the key out of the file's directory (an environment variable
    or a secrets manager); ``rotate`` re-encrypts every token under a new key."""

    def __init__(self, path: str | Path, key: bytes | str) -> None:
        self.path = Path(path)
        self._fernet = _fernet(key)

    @staticmethod
    def generate_key() -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode("ascii")

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: not a token vault ({exc})") from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if (
            data.get("version") != FORMAT_VERSION
            or not isinstance(tokens, dict)
            or not all(isinstance(v, str) for v in tokens.values())
        ):
            raise ValueError(f"{self.path}: not a version {FORMAT_VERSION} token vault")
        return tokens

    def _write(self, tokens: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"version": FORMAT_VERSION, "tokens": tokens}, out, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, user_id: str, token: str) -> None:
        if not user_id or not token:
            raise ValueError("put needs a user id and a non-empty token")
        tokens = self._read()
        tokens[user_id] = self._fernet.encrypt(token.encode()).decode("ascii")
        self._write(tokens)

    def get(self, user_id: str) -> str:
        """The user's token; ``LookupError`` if none, ``ValueError`` if it does not decrypt
        under this key (another key, or the file was altered)."""
        from cryptography.fernet import InvalidToken

        sealed = self._read().get(user_id)
        if sealed is None:
            raise LookupError(f"no token stored for user {user_id!r} in {self.path}")
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                f"the token of user {user_id!r} in {self.path} does not decrypt: "
                "wrong key, or the file was altered"
            ) from None

    def remove(self, user_id: str) -> None:
        tokens = self._read()
        if tokens.pop(user_id, None) is not None:
            self._write(tokens)

    def rotate(self, new_key: bytes | str) -> None:
        """Re-encrypt every token under ``new_key``; this vault uses it from then on."""
        new = _fernet(new_key)
        tokens = {user: self.get(user) for user in self._read()}
        self._write({u: new.encrypt(t.encode()).decode("ascii") for u, t in tokens.items()})
        self._fernet = new

"""Secrets: encrypted in the store, granted per function, read from ``ctx.secrets``, and
redacted from every log line. Never environment variables: those end up in logs and
crash reports.

Values are sealed with AES-256-GCM (``cryptography``); the secret's name is the associated
data, so a sealed value cannot be moved to another name. The key is 32 random bytes in a
file outside the app folder: ``$HIBANA_SECRET_KEY_FILE`` or ``~/.config/hibana/key``
(mode 0600, created by the first ``hibana secrets set``).
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hibana.errors import HibanaError
from hibana.names import NAME_RULE, name_problem

KEY_ENV = "HIBANA_SECRET_KEY_FILE"
#: Values shorter than this could not be redacted from logs without mangling them.
MIN_LENGTH = 4
#: Like AWS Secrets Manager: a value may be at most this many bytes (UTF-8). Every log
#: line is searched for every value, to redact it; a large file is no secret to log.
MAX_VALUE_BYTES = 64 * 1024


class SecretError(HibanaError):
    """A secret that is missing, not granted, or cannot be decrypted; the message says
    which and how to fix it."""


def key_path() -> Path:
    configured = os.environ.get(KEY_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".config" / "hibana" / "key"


def load_key(create: bool = False) -> bytes:
    """The secrets key; created (mode 0600) when ``create`` and there is none yet."""
    path = key_path()
    if not path.exists():
        if not create:
            raise SecretError(
                f"the secrets key file {path} does not exist; it is made by the first "
                f"`hibana secrets set`, or point {KEY_ENV} at the key file the secrets were "
                "set with"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            if exc.filename != str(path):  # a folder on the way is a file
                raise _unmade(path, f"{exc.filename} is a file, not a folder") from None
            # else another `hibana secrets set` made it meanwhile: it is the key
        except OSError as exc:
            raise _unmade(path, f"{exc.strerror}: {exc.filename}") from None
        else:
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        # chmod 600, as a directory's mode would have it said, is no fix for that
        raise SecretError(
            f"the secrets key file {path} is a directory; point {KEY_ENV} at the key file "
            f"(the one the first `hibana secrets set` made, {path / 'key'} if it was made "
            "there)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"the secrets key file {path} can be read by other users (mode "
            f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (ValueError, OSError) as exc:
        raise SecretError(f"the secrets key file {path} is unreadable: {exc}") from None
    if len(key) != 32:
        raise SecretError(f"the secrets key file {path} does not hold a 32-byte key")
    return key


def _unmade(path: Path, why: str) -> SecretError:
    return SecretError(
        f"cannot make the secrets key file {path} ({why}); point {KEY_ENV} at a path in a "
        "folder this user may write to"
    )


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise SecretError(f"secret name {name!r}: use {NAME_RULE}; {problem}")


def seal(key: bytes, name: str, value: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(value) < MIN_LENGTH:
        raise SecretError(
            f"the value of secret {name!r} is shorter than {MIN_LENGTH} characters; it "
            "could not be told apart in logs to redact it"
        )
    try:
        plain = value.encode()
    except UnicodeEncodeError:
        raise SecretError(
            f"the value of secret {name!r} is not text (it holds a lone surrogate: bytes "
            "that are not UTF-8); base64-encode a binary value first"
        ) from None
    if len(plain) > MAX_VALUE_BYTES:
        raise SecretError(
            f"the value of secret {name!r} is over {MAX_VALUE_BYTES} bytes (64 KiB); keep a "
            "large file elsewhere, and the key that opens it as the secret"
        )
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, name.encode())


def unseal(key: bytes, name: str, blob: bytes) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], name.encode()).decode()
    except (InvalidTag, ValueError):
        raise SecretError(
            f"secret {name!r} cannot be decrypted with the key in {key_path()}; was it set "
            f"with another key? Set {KEY_ENV} to that key, or set the secret again"
        ) from None


class Secrets(Mapping[str, str]):
    """``ctx.secrets``: the values of the secrets a function named in ``secrets=[...]``."""

    __slots__ = ("_values", "_function")

    def __init__(self, values: Mapping[str, str], function: str) -> None:
        self._values = dict(values)
        self._function = function

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            granted = ", ".join(sorted(self._values))
            names = f"it names only {granted}" if granted else "it names no secrets"
            raise SecretError(
                f"function {self._function!r} may not read secret {name!r}: {names}; add "
                f"{name!r} to secrets=[...] in its decorator"
            ) from None

    def __contains__(self, name: object) -> bool:
        # Mapping's would read the value, and a name not granted raises SecretError
        return name in self._values

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name`` if the function was granted it, else ``default``."""
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"  # names only, never values


def grants(names: Iterable[str], where: str) -> tuple[str, ...]:
    """Checked secret names of a decorator's ``secrets=``."""
    from hibana.errors import AppError

    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, Iterable):
        raise AppError(
            f"secrets= in {where} is {names!r:.60}, no list of secret names; write "
            'secrets=["db-password"] (or leave it out for none)'
        )
    out = tuple(dict.fromkeys(names))
    for name in out:
        try:
            check_name(name)
        except SecretError as exc:
            raise AppError(f"secrets= in {where}: {exc}") from None
    return out

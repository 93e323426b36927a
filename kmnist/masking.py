"""The one masking function: every secret the project could print, log or store becomes ***.

`mask(text)` is applied to whatever leaves the process (error lines, echoed output, an argv that
W&B records). It replaces, in this order:

- the secrets it knows, wherever they appear, in every form they travel in: the W&B key
  (WANDB_API_KEY, the netrc's passwords) raw and base64 (`api:KEY`, as in a Basic auth header),
  and database passwords (PGPASSWORD, the storage URL in force or `remember`ed) raw,
  percent-encoded and decoded;
- URL passwords, read the way SQLAlchemy reads them (up to the last `@` of the authority, so a
  raw `/`, `:` or `?` in the password is still masked), and query-string secrets
  (`?password=...`, `&token=...`);
- `password=...`, `api_key: ...`, `Authorization: Basic ...` and bearer tokens in free text.

Stdlib only: every wing may call it.
"""

from __future__ import annotations

import base64
import netrc
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

REDACTED = "***"
MIN_SECRET = 4  # shorter known secrets are masked only where their place shows (URL, key=)
SECRET_ENV = ("WANDB_API_KEY", "PGPASSWORD")
URL_ENV = ("KMNIST_SWEEP_STORAGE",)  # URLs whose password is a known secret

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^\s'\"<>]+)")
_SECRET_KEYS = (
    r"pass(?:word|wd)?|pwd|sslpassword|secret|token|access[_-]?token|api[_-]?key|apikey|"
    r"auth|authorization|x-api-key|credentials?"
)
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_SECRET_KEYS})=)[^&#;\s]*")
_KEY_VALUE = re.compile(
    rf"""(?i)\b({_SECRET_KEYS})(['"]?\s*[:=]\s*['"]?)(?:(basic|bearer)\s+)?[^\s'",}}&]+"""
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}")

_remembered: set[str] = set()


def mask(text: str) -> str:
    """`text` with every password, key and token replaced by ***."""
    if not text:
        return text
    for secret in known_secrets():
        text = text.replace(secret, REDACTED)
    text = _URL.sub(lambda m: f"{m['scheme']}://{_mask_url_rest(m['rest'])}", text)
    text = _KEY_VALUE.sub(_mask_key_value, text)
    return _SCHEME_TOKEN.sub(lambda m: f"{m[1]} {REDACTED}", text)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line as it may be shown or recorded: each word masked."""
    return [mask(word) for word in argv]


def remember(text: str) -> None:
    """The passwords of the URLs in `text` are known secrets from now on, in this process."""
    for m in _URL.finditer(text):
        _remembered.update(url_secrets(m[0]))


def url_secrets(url: str) -> list[str]:
    """The password of a URL: its userinfo's, and any secret in its query string."""
    found = []
    rest = url.split("://", 1)[-1]
    userinfo = _userinfo(rest)
    if userinfo and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for m in _QUERY_SECRET.finditer(rest):
        found.append(rest[m.end(1) : m.end()])
    return [s for s in found if s]


def known_secrets() -> list[str]:
    """Every secret in force, in every form it may appear in; longest first."""
    raw = set(_remembered)
    raw.update(os.environ.get(name, "").strip() for name in SECRET_ENV)
    for name in URL_ENV:
        raw.update(url_secrets(os.environ.get(name, "")))
    raw.update(netrc_passwords())
    forms: set[str] = set()
    for secret in filter(None, raw):
        forms.update(_forms(secret))
    return sorted((f for f in forms if len(f) >= MIN_SECRET), key=len, reverse=True)


def netrc_path() -> Path:
    """Where W&B (and libcurl, requests) read a login: $NETRC, else ~/.netrc, else ~/_netrc."""
    if path := os.environ.get("NETRC"):
        return Path(path).expanduser()
    unix = Path("~/.netrc").expanduser()
    windows = Path("~/_netrc").expanduser()
    return windows if windows.exists() and not unix.exists() else unix


def netrc_passwords() -> list[str]:
    try:
        entries = netrc.netrc(str(netrc_path()))
    except (OSError, netrc.NetrcParseError):
        return []
    return [password for _, _, password in entries.hosts.values() if password]


def _forms(secret: str) -> Iterable[str]:
    """A secret raw, percent-decoded and -encoded, and base64 (alone and as `api:SECRET`)."""
    plain = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    for value in list(plain):
        for raw in (value, f"api:{value}"):
            encoded = base64.b64encode(raw.encode()).decode()
            plain |= {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode()}
    return plain


def _userinfo(rest: str) -> str | None:
    """The `user:password` part after `scheme://`, or None.

    Parsers disagree on a raw `@`, `/` or `?` in a password; this takes the widest reading (the
    last `@` before the query, else the last `@` at all), so whatever a driver reads as the
    password is inside it.
    """
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0:
        at = rest.rfind("@")
    return rest[:at] if at >= 0 else None


def _mask_url_rest(rest: str) -> str:
    userinfo = _userinfo(rest)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:{REDACTED}{rest[len(userinfo) :]}"
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}{REDACTED}", rest)


def _mask_key_value(m: re.Match[str]) -> str:
    scheme = f"{m[3]} " if m[3] else ""
    return f"{m[1]}{m[2]}{scheme}{REDACTED}"

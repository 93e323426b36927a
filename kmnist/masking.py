"""The one masking function: every secret the project could print, log or store becomes ***.

`mask(text)` is applied to whatever leaves the process (error lines, echoed output, an argv that
W&B records). It replaces, in this order:

- the secrets it knows, wherever they appear, in every form they travel in: the W&B key
  (WANDB_API_KEY, the netrc's passwords) raw and base64 (`api:KEY`, as in a Basic auth header),
  the value of every variable whose name says it holds a secret (PGPASSWORD, *_PASSWORD,
  *_TOKEN, *_API_KEY...), and the passwords of the storage URL in force or `remember`ed, raw,
  percent-encoded and decoded;
- URL passwords in free text, read the widest way (up to the last `@` of the authority, so a
  raw `/`, `:` or `?` in the password is still masked), and query-string secrets
  (`?password=...`, `&token=...`);
- `password=...`, `api_key: ...`, `Authorization: Basic ...` and bearer tokens in free text;
  after a bare `key:` a plain lowercase word that more words follow is a sentence, not a
  secret (`token: expected a number` is kept; `token: abc` and `token: x9 is bad` are not).

A URL's password is known under every reading a driver may give it, not one pattern: SQLAlchemy
(and so psycopg2 and libpq) ends it at the first `@`, urllib and redis-py at the last `@` before
the first `/`, `?` or `#`, and the widest reading at the last `@`. Its pieces between raw `@ / ?
#` are known too: a driver that reads the URL another way echoes them as a host, a port or a
path (libpq: `could not translate host name "SECRET@db"`). A command-line word holding a URL is
read to the word's end, so a password with a space is still one password.

Stdlib only: every wing may call it.
"""

from __future__ import annotations

import base64
import netrc
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

REDACTED = "***"
MIN_SECRET = 4  # shorter known secrets are masked only where their place shows (URL, key=)
SECRET_ENV = ("WANDB_API_KEY", "PGPASSWORD")
URL_ENV = ("KMNIST_SWEEP_STORAGE",)  # URLs whose password is a known secret
# Any other variable whose name says it holds a secret (REDISCLI_AUTH, GITHUB_TOKEN, ...).
_SECRET_NAME = re.compile(
    r"(?i)(?:^|_)(?:PASSWORD|PASSWD|PASS|SECRET|TOKEN|API_?KEY|ACCESS_KEY|AUTH)$"
)
_NOT_SECRET = frozenset({"true", "false", "none", "null", "yes", "no"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^\s'\"<>]+)")
_SQLALCHEMY_PASSWORD = re.compile(r"[^:/]*:(?P<password>[^@]*)@")  # make_url's own pattern
_PIECES = re.compile(r"[@/?#\s]+")  # where a driver that misreads a URL cuts its password
_SECRET_KEYS = (
    r"pass(?:word|wd)?|pwd|sslpassword|secret|token|access[_-]?token|api[_-]?key|apikey|"
    r"auth|authorization|x-api-key|credentials?"
)
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_SECRET_KEYS})=)[^&#;\s]*")
# Not after `/` or `.`: `/etc/passwd:1:` is a file and its line, not a label and its secret.
_KEY_VALUE = re.compile(
    rf"""(?i)(?<![/.])\b({_SECRET_KEYS})(['"]?\s*[:=]\s*['"]?)(?:(basic|bearer)\s+)?[^\s'",}}&]+"""
)
# A libpq keyword string (`host=db password='a b'`): the value, quoted or up to a space.
_DSN_SECRET = re.compile(
    rf"(?i)(?<![A-Za-z0-9_])(?:{_SECRET_KEYS})\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}")
_PLAIN_WORD = re.compile(r"[a-z]{1,15}")
_MORE_WORDS = re.compile(r"[,;.]? +[A-Za-z]")

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
    return [mask_word(word) for word in argv]


def mask_word(word: str) -> str:
    """One command-line word (or a variable's value): a URL in it runs to the word's end."""
    for start, end in reversed(list(_url_spans(word))):
        scheme, rest = word[start:end].split("://", 1)
        word = f"{word[:start]}{scheme}://{_mask_url_rest(rest)}{word[end:]}"
    return mask(word)


def remember(word: str) -> None:
    """The passwords in `word` (a command-line word: URLs and `password=` values) are known
    secrets from now on, in this process."""
    _remembered.update(word_secrets(word))


def word_secrets(word: str) -> list[str]:
    """The passwords of the URLs in a word, each read to the word's end, and `key=` values."""
    found = [s for start, end in _url_spans(word) for s in url_secrets(word[start:end])]
    return found + dsn_secrets(word)


def url_secrets(url: str) -> list[str]:
    """Every reading of a URL's password, its pieces, and the secrets of its query string."""
    rest = url.split("://", 1)[-1]
    found = [url_password(url), _sqlalchemy_password(rest), _urllib_password(rest)]
    found += _PIECES.split(url_password(url) or "")
    found += [rest[m.end(1) : m.end()] for m in _QUERY_SECRET.finditer(rest)]
    return [s for s in dict.fromkeys(found) if s]


def url_password(url: str) -> str | None:
    """The password of a URL read the widest way (as written, not decoded), or None."""
    userinfo = _userinfo(url.split("://", 1)[-1])
    if userinfo is None or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1]


def dsn_secrets(text: str) -> list[str]:
    """The values of `password=...` (and the other secret keys) in a libpq keyword string."""
    found = []
    for m in _DSN_SECRET.finditer(text):
        value = m[1]
        if value.startswith("'") and value.endswith("'") and len(value) > 1:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return [s for s in found if s]


def known_secrets() -> list[str]:
    """Every secret in force, in every form it may appear in; longest first."""
    raw = set(_remembered)
    raw.update(environment_secrets())
    for name in URL_ENV:
        raw.update(word_secrets(os.environ.get(name, "")))
    raw.update(netrc_passwords())
    forms: set[str] = set()
    for secret in filter(None, raw):
        forms.update(_forms(secret))
    return sorted((f for f in forms if len(f) >= MIN_SECRET), key=len, reverse=True)


def environment_secrets() -> Iterator[str]:
    """The values of the variables named in SECRET_ENV or named like a secret."""
    for name, value in os.environ.items():
        value = value.strip()
        if (name in SECRET_ENV or _SECRET_NAME.search(name)) and value.lower() not in _NOT_SECRET:
            yield value


def netrc_path() -> Path:
    """Where W&B (and libcurl, requests) read a login: $NETRC, else ~/.netrc, else ~/_netrc."""
    if path := os.environ.get("NETRC"):
        return Path(path).expanduser()
    unix = Path("~/.netrc").expanduser()
    windows = Path("~/_netrc").expanduser()
    return windows if windows.exists() and not unix.exists() else unix


def netrc_passwords() -> list[str]:
    path = netrc_path()
    if not path.is_file():  # a fifo or a device named by $NETRC would block the read
        return []
    try:
        entries = netrc.netrc(str(path))
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


def _url_spans(word: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each URL in a word: from its scheme to the next URL or the word's end."""
    starts = [m.start() for m in _SCHEME.finditer(word)]
    for i, start in enumerate(starts):
        yield start, starts[i + 1] if i + 1 < len(starts) else len(word)


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


def _sqlalchemy_password(rest: str) -> str | None:
    """The password as SQLAlchemy's make_url reads it: up to the first `@`."""
    m = _SQLALCHEMY_PASSWORD.match(rest)
    return m["password"] if m else None


def _urllib_password(rest: str) -> str | None:
    """The password as urllib (and redis-py) reads it: the authority ends at `/`, `?` or `#`."""
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo.split(":", 1)[1] if at and ":" in userinfo else None


def _mask_url_rest(rest: str) -> str:
    userinfo = _userinfo(rest)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:{REDACTED}{rest[len(userinfo) :]}"
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}{REDACTED}", rest)


def _mask_key_value(m: re.Match[str]) -> str:
    if _is_prose(m):
        return m[0]
    scheme = f"{m[3]} " if m[3] else ""
    return f"{m[1]}{m[2]}{scheme}{REDACTED}"


def _is_prose(m: re.Match[str]) -> bool:
    """`token: expected a number`: after a bare colon, a plain lowercase word that more words
    follow is a sentence, not a secret (one after `=`, in quotes, or ending the line is not)."""
    separator, value = m[2], m[0][len(m[1]) + len(m[2]) :]
    return (
        separator.strip() == ":"
        and not m[3]
        and _PLAIN_WORD.fullmatch(value) is not None
        and _MORE_WORDS.match(m.string, m.end()) is not None
    )

"""W&B credentials and reachability, checked in a second, and secrets kept out of every message.

The API key is W&B's: `WANDB_API_KEY`, else the netrc entry `wandb login` wrote. It is looked
up only to say whether one exists and to mask it; it is never printed, logged or stored. W&B's
own calls retry for about 20 s when its server does not answer, so before any of them the server
is probed once with a short timeout, and `WANDB_HTTP_TIMEOUT` is set for the calls that follow.
"""

from __future__ import annotations

import netrc
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from kmnist.errors import UserError
from kmnist.masking import mask, netrc_path

FALLBACK_BASE_URL = "https://api.wandb.ai"
PROBE_SECONDS = 3.0
HTTP_TIMEOUT_SECONDS = "10"  # for W&B's own calls, unless the user set WANDB_HTTP_TIMEOUT
TIMEOUT_ENV = "WANDB_HTTP_TIMEOUT"


class WandbUnavailable(UserError):
    """No API key, or the W&B server does not answer."""


def base_url() -> str:
    """The W&B server in force: WANDB_BASE_URL, else the installed wandb's default."""
    if url := os.environ.get("WANDB_BASE_URL"):
        return url.rstrip("/")
    try:
        from wandb.sdk.lib.urls import DEFAULT_BASE_URL
    except ImportError:  # older wandb: the default lived elsewhere and was api.wandb.ai
        return FALLBACK_BASE_URL
    return DEFAULT_BASE_URL


def api_key() -> str | None:
    """The configured API key, or None. For checks and masking only: never show it."""
    if key := os.environ.get("WANDB_API_KEY", "").strip():
        return key
    return _netrc_key(base_url())


def key_source() -> str | None:
    """Where the key comes from, for messages: the variable's name or the netrc path."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return "WANDB_API_KEY"
    return str(netrc_path()) if _netrc_key(base_url()) else None


def _netrc_key(url: str) -> str | None:
    try:
        entries = netrc.netrc(str(netrc_path()))
    except (OSError, netrc.NetrcParseError):
        return None
    hosts = [urlsplit(url).netloc, urlsplit(FALLBACK_BASE_URL).netloc]
    for host in hosts:
        found = entries.authenticators(host)
        if found and found[2]:
            return found[2]
    return None


def unreachable(url: str | None = None, timeout: float | None = None) -> str | None:
    """None when the server answers (any HTTP status), else why not, in a few words.

    The probe carries no credentials: an answer of 401 still proves the server is there.
    """
    url = url or base_url()
    try:
        with urllib.request.urlopen(url, timeout=timeout or probe_seconds()):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return mask(str(reason) or type(exc).__name__)


def probe_seconds() -> float:
    """The probe's timeout: 3 s, or less when WANDB_HTTP_TIMEOUT says so."""
    try:
        return min(PROBE_SECONDS, float(os.environ.get(TIMEOUT_ENV, PROBE_SECONDS)))
    except ValueError:
        return PROBE_SECONDS


def problem() -> str | None:
    """Why W&B cannot be used from here right now, or None. Takes at most a few seconds."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']} is set"
    if not api_key():
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    url = base_url()
    if why := unreachable(url):
        return f"the W&B server {mask(url)} does not answer ({why})"
    return None


def require(fallback: str) -> None:
    """Raise WandbUnavailable (one line, ending with `fallback`) unless W&B can be used now."""
    if why := problem():
        raise WandbUnavailable(f"{why}; {fallback}")
    os.environ.setdefault(TIMEOUT_ENV, HTTP_TIMEOUT_SECONDS)

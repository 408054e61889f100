"""Who may choose where a key goes: the user, never a stored config.

A Chroma collection stores its function's config (``base_url``, ``api_key_env_var``, ...), and whoever can
write that config (a co-tenant of a shared server, whoever hands you a store folder) is not you. A function
rebuilt from such data sends requests only to

- hosts its provider declares as its own (``Provider.official_hosts``, over https on port 443), or
- hosts you trust in this process: ``MMEMBED_TRUSTED_HOSTS``, comma-separated ``host`` (its scheme's default
  port only: 443 for https, 80 for http) or ``host:port`` (that port, either scheme); case-insensitive hosts,
  IPv6 in brackets. Loopback is not trusted by default: a co-tenant can listen there too.

and reads its key only from one of the provider's own variables (``env_var``, ``fallback_env_vars``) or one
named in ``MMEMBED_TRUSTED_KEY_VARS`` (comma-separated). What you write in code (``base_url=``,
``api_key_env_var=``) or on the command line (``--base-url``) is yours and is not checked here; so is a config
equal to one a function made in code in this process wrote (:func:`remember`): Chroma rebuilds the function
of ``create_collection(configuration={"embedding_function": ef})`` from its config, in the same process.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .providers import Provider

__all__ = [
    "TRUSTED_HOSTS_VAR",
    "TRUSTED_KEY_VARS_VAR",
    "check_host",
    "check_key_var",
    "check_stored_config",
    "remember",
    "written_here",
]

TRUSTED_HOSTS_VAR = "MMEMBED_TRUSTED_HOSTS"
TRUSTED_KEY_VARS_VAR = "MMEMBED_TRUSTED_KEY_VARS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Only scheme://host[:port][/path]: no user info, query, fragment, backslash or space, so that every URL
# parser (ours, urllib3's) reads the same host from it.
_PLAIN_URL = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?(/[^\s?#@\\]*)?", re.IGNORECASE)


_written: set[tuple[str, str]] = set()
_written_lock = threading.Lock()


def remember(provider: str, config: Mapping[str, Any]) -> None:
    """Record a config that code in this process wrote (a function made with the user's own options)."""
    with _written_lock:
        _written.add((provider, _canonical(config)))


def written_here(provider: str, config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is exactly one that code in this process wrote (so the user chose its host and key)."""
    with _written_lock:
        return (provider, _canonical(config)) in _written


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), sort_keys=True, default=str)


def check_stored_config(provider: type[Provider], config: Mapping[str, Any], what: str) -> None:
    """Refuse a stored config whose key variable or base URL the user has not allowed (before any network use)."""
    check_key_var(provider, config.get("api_key_env_var"), what)
    if config.get("base_url") is not None:
        check_host(provider, str(config["base_url"]), what)


def check_key_var(provider: type[Provider], name: object, what: str) -> None:
    """Refuse a stored ``api_key_env_var`` that is neither the provider's own nor in ``MMEMBED_TRUSTED_KEY_VARS``."""
    if name is None:
        return
    declared = (provider.env_var, *provider.fallback_env_vars)
    if name in declared or name in _listed(TRUSTED_KEY_VARS_VAR):
        return
    raise ConfigurationError(
        f"{what}: refused to read the key from ${name}, named by a stored config: it is not one of "
        f"{provider.name}'s key variables ({', '.join(declared)}); nothing was read or sent. To allow it, add "
        f"{name} to {TRUSTED_KEY_VARS_VAR}, or pass api_key=... or api_key_env_var={name!r} in code"
    )


def check_host(provider: type[Provider], url: str, what: str) -> None:
    """Refuse a URL from stored data unless its host is the provider's own or one the user trusts."""
    match = _PLAIN_URL.fullmatch(url)
    if match is None:
        raise ConfigurationError(
            f"{what}: refused a stored base_url that is not a plain scheme://host[:port][/path] URL; nothing was "
            "sent. Pass your own function with base_url=... in code (on the CLI, --base-url)"
        )
    scheme, host = match.group(1).lower(), match.group(2).lower().strip("[]").rstrip(".")
    port = int(match.group(3)) if match.group(3) else _DEFAULT_PORTS[scheme]
    if _official(provider, scheme, host, port) or _user_trusted(scheme, host, port):
        return
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    raise ConfigurationError(
        f"{what}: refused to send requests to {shown}, named by a stored config: it is not a host of "
        f"{provider.name}'s nor one you trust; nothing was sent. To allow it, add {shown} to {TRUSTED_HOSTS_VAR}, "
        "or pass your own function with base_url=... in code (embedding_function=...(base_url=...); on the "
        "CLI, --base-url)"
    )


def _official(provider: type[Provider], scheme: str, host: str, port: int) -> bool:
    if scheme != "https" or port != 443:  # a provider's own host, but never with the key in clear text
        return False
    patterns = list(provider.official_hosts)
    default = getattr(provider, "default_base_url", "")
    if "{" not in default:  # a templated default (one host per region) is covered by official_hosts
        patterns.append(urlsplit(default).hostname or "")
    return any(_pattern(p).fullmatch(host) for p in patterns if p)


@lru_cache(maxsize=64)
def _pattern(pattern: str) -> re.Pattern[str]:
    """A host pattern: ``*`` stands for one DNS label (never a dot), so ``*-x.example.com`` stays in example.com."""
    return re.compile("[a-z0-9-]+".join(re.escape(part) for part in pattern.lower().split("*")))


def _user_trusted(scheme: str, host: str, port: int) -> bool:
    for entry in _listed(TRUSTED_HOSTS_VAR):
        trusted_host, trusted_port = _parse_entry(entry)
        if trusted_host != host:
            continue
        if trusted_port == port or (trusted_port is None and port == _DEFAULT_PORTS[scheme]):
            return True
    return False


def _parse_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (a scheme in front is ignored)."""
    parts = urlsplit(entry if "://" in entry else f"//{entry}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or (port is None and parts.netloc.rsplit("]", 1)[-1].count(":") == 1):
        raise ConfigurationError(f"{TRUSTED_HOSTS_VAR}: {entry!r} is not a host or host:port")
    return parts.hostname.lower().rstrip("."), port


def _listed(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]

"""Small utilities shared by the scripts: EasyDict, time formatting, and an offline file cache.

The cache mirrors the layout of the official dnnlib cache (`<cache>/downloads/<md5(url)>_<filename>`), so a
file fetched once by hand (or by the official code) is found again. Nothing here ever touches the network:
a URL that is not in the cache is an error that says exactly where to put the file.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import urllib.parse
from typing import IO, Any

CACHE_DIR_ENV = "RLO_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "rlo_stylegan2")
OFFICIAL_CACHE_DIR_ENV = "DNNLIB_CACHE_DIR"  # the official code's variable; searched read-only as a fallback
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes (`d.key`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def format_time(seconds: float) -> str:
    """Human-readable duration, rounded to whole seconds: '7s', '3m 05s', '2h 01m 09s', '3d 04h 05m'."""
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 60 * 60:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 24 * 60 * 60:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


# ----------------------------------------------------------------------------
# Offline cache.


def source_version(path: str) -> str | None:
    """The git commit of the checkout holding `path` ('<12 hex> + uncommitted changes' when tracked files differ
    from it), or None when it is not a git checkout or git is missing: what a study records to be rerun exactly."""
    try:
        git = ["git", "-C", os.path.dirname(os.path.abspath(path))]
        commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + (" + uncommitted changes" if status.stdout.strip() else "")


def cache_dir() -> str:
    """Root of our cache: $RLO_CACHE_DIR, else ~/.cache/rlo_stylegan2 (not created here)."""
    return os.path.abspath(os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR))


def make_cache_dir_path(*paths: str) -> str:
    """Path inside the cache root (official dnnlib name); the caller creates it if it writes there."""
    return os.path.join(cache_dir(), *paths)


def is_url(path_or_url: str) -> bool:
    """True for 'scheme://...' strings (http, https, file, ...)."""
    return bool(_URL_RE.match(str(path_or_url)))


def url_md5(url: str) -> str:
    """The md5 hex digest of the URL's UTF-8 bytes: the official cache's file-name prefix."""
    return hashlib.md5(url.encode("utf-8")).hexdigest()


def url_filename(url: str) -> str:
    """The URL's last path component made file-system safe, as the official cache names files."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    return re.sub(r"[^0-9a-zA-Z-._]", "_", name)


def cache_path_for_url(url: str, root: str | None = None) -> str:
    """Where the file for `url` is expected: <root>/downloads/<md5(url)>_<filename>."""
    root = cache_dir() if root is None else root
    return os.path.join(root, "downloads", f"{url_md5(url)}_{url_filename(url)}")


def _official_cache_root() -> str:
    env = os.environ.get(OFFICIAL_CACHE_DIR_ENV)
    return os.path.abspath(os.path.expanduser(env or os.path.join("~", ".cache", "dnnlib")))


def _cached_candidates(url: str) -> list[str]:
    """Existing cache files for `url`, in search order (ours first, then the official dnnlib cache)."""
    found: list[str] = []
    for root in (cache_dir(), _official_cache_root()):
        downloads = os.path.join(root, "downloads")
        exact = os.path.join(downloads, f"{url_md5(url)}_{url_filename(url)}")
        plain = os.path.join(downloads, url_filename(url))
        # Official downloads may carry a different file name (from Content-Disposition); any <md5>_* matches.
        any_md5 = sorted(glob.glob(os.path.join(glob.escape(downloads), url_md5(url) + "_*")))
        for path in [exact, *any_md5, plain]:
            if os.path.isfile(path) and path not in found:
                found.append(path)
    return found


def resolve_path(path_or_url: str) -> str:
    """Local file path for a path or URL; never downloads.

    A local path (or file:// URL) is returned as is if it exists. An http(s) URL is looked up only in the cache;
    when absent, FileNotFoundError names the URL and the exact path to place the file at.
    """
    text = os.fspath(path_or_url)
    if not is_url(text):
        if not os.path.exists(text):
            raise FileNotFoundError(f"file not found: {text!r}")
        return text
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme == "file":
        local = urllib.parse.unquote(urllib.parse.urlparse(text).path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"file not found: {local!r} (from {text!r})")
        return local
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {text!r}: use a local path or an http(s) URL")
    candidates = _cached_candidates(text)
    if candidates:
        return candidates[0]
    raise FileNotFoundError(
        f"{text} is not in the local cache and nothing is downloaded at run time. "
        f"Download it yourself and put it at {cache_path_for_url(text)} "
        f"(the cache root is ${CACHE_DIR_ENV}, default {DEFAULT_CACHE_DIR}), or pass the local file path instead."
    )


def open_url(url: str, return_filename: bool = False) -> IO[bytes] | str:
    """Open a local path or cached URL for binary reading (or return its path); see resolve_path."""
    path = resolve_path(url)
    return path if return_filename else open(path, "rb")

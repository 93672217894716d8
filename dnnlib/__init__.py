"""Miscellaneous utilities (official dnnlib names): EasyDict, the offline file cache, time formatting."""

from .util import EasyDict, format_time, make_cache_dir_path, open_url, resolve_path

__all__ = ["EasyDict", "format_time", "make_cache_dir_path", "open_url", "resolve_path"]

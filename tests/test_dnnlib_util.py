"""dnnlib.util: EasyDict, format_time and the offline cache lookup (never the network)."""

import hashlib
import pickle
import socket
import subprocess

import pytest

import dnnlib
from dnnlib import util

URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/cifar10.pkl"


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RLO_CACHE_DIR", str(root))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "official_cache"))
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_easydict_attribute_access_mirrors_items():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {"a": 1, "b": 2} and d.a == 1 and d["b"] == 2
    del d.a
    assert "a" not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    assert pickle.loads(pickle.dumps(d)) == d


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (59.4, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m 00s"),
        (3 * 3600 + 2 * 60 + 5, "3h 02m 05s"),
        (86400, "1d 00h 00m"),
        (2 * 86400 + 5 * 3600 + 7 * 60 + 30, "2d 05h 07m"),
    ],
)
def test_format_time_matches_official_layout(seconds, text):
    assert util.format_time(seconds) == text


def test_cache_path_uses_md5_of_url_like_official_layout(cache_root):
    expected = cache_root / "downloads" / (hashlib.md5(URL.encode()).hexdigest() + "_cifar10.pkl")
    assert util.cache_path_for_url(URL) == str(expected)


def test_cache_dir_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("RLO_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert util.cache_dir() == str(tmp_path / ".cache" / "rlo_stylegan2")


def test_local_path_is_used_as_is(tmp_path, no_network):
    path = tmp_path / "net.pkl"
    path.write_bytes(b"x")
    assert util.resolve_path(str(path)) == str(path)
    with util.open_url(str(path)) as f:
        assert f.read() == b"x"
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        util.resolve_path(str(tmp_path / "nothere.pkl"))


def test_file_url_maps_to_local_path(tmp_path, no_network):
    path = tmp_path / "net.pkl"
    path.write_bytes(b"x")
    assert util.resolve_path(path.as_uri()) == str(path)


def test_missing_url_error_names_url_and_exact_cache_path(cache_root, no_network):
    with pytest.raises(FileNotFoundError) as info:
        util.open_url(URL)
    message = str(info.value)
    assert URL in message
    assert util.cache_path_for_url(URL) in message
    assert "nothing is downloaded" in message


@pytest.mark.parametrize("name", ["md5", "plain", "official_md5_other_name"])
def test_url_found_in_cache(cache_root, tmp_path, no_network, name):
    md5 = hashlib.md5(URL.encode()).hexdigest()
    target = {
        "md5": cache_root / "downloads" / f"{md5}_cifar10.pkl",
        "plain": cache_root / "downloads" / "cifar10.pkl",
        "official_md5_other_name": tmp_path / "official_cache" / "downloads" / f"{md5}_renamed.pkl",
    }[name]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert util.resolve_path(URL) == str(target)
    with util.open_url(URL) as f:
        assert f.read() == b"weights"


def test_cache_entry_of_another_url_is_not_used(cache_root, no_network):
    other = "https://example.com/a/cifar10.pkl?x=1"
    (cache_root / "downloads").mkdir(parents=True)
    (cache_root / "downloads" / (hashlib.md5(other.encode()).hexdigest() + "_cifar10.pkl")).write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        util.resolve_path(URL)


def test_unsupported_scheme_is_refused(no_network):
    with pytest.raises(ValueError, match="s3"):
        util.resolve_path("s3://bucket/net.pkl")


def test_source_version_names_the_commit_and_says_when_files_differ(tmp_path):
    assert util.source_version(str(tmp_path / "x.py")) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "x.py").write_text("a = 1\n")
    subprocess.run([*git, "add", "x.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert util.source_version(str(tmp_path / "x.py")) == head and len(head) == 12
    (tmp_path / "x.py").write_text("a = 2\n")
    assert util.source_version(str(tmp_path / "x.py")) == f"{head} + uncommitted changes"

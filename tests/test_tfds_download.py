"""TFDS's real download-and-prepare path, with only the HTTP fetch itself stubbed.

`tfds.testing.mock_data` skips the download manager, so it cannot catch what broke real
users: looking up a dataset's registered checksums imports `importlib_resources`, which
neither tensorflow-datasets nor etils declares (setup.cfg now does). These tests run that
lookup for mnist and stop only where TFDS would open a socket.
"""

import contextlib
import hashlib
import types

import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import download_manager, downloader

from tfgen.config import DataConfig
from tfgen.data.tfds import tfds_source
from tfgen.errors import DataError

FAKE_FILE = b"not really mnist"


@pytest.fixture
def serve_fake_files(monkeypatch):
    """Every URL TFDS fetches answers FAKE_FILE; returns the list of URLs fetched."""
    fetched = []

    @contextlib.contextmanager
    def open_url(url, **kwargs):
        fetched.append(url)
        yield types.SimpleNamespace(url=url, headers={}), iter([FAKE_FILE])

    monkeypatch.setattr(downloader, "_open_url", open_url)
    return fetched


@pytest.fixture
def no_network(monkeypatch):
    """Every URL TFDS fetches fails as it does on a machine without internet."""

    def open_url(url, **kwargs):
        raise requests.exceptions.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setattr(downloader, "_open_url", open_url)


def test_mnist_download_checks_registered_checksums(tmp_path, serve_fake_files):
    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    # The fake files reach the checksum check, which compares them with the checksums TFDS
    # ships for mnist: only a looked-up checksum can be "expected" and mismatch.
    with pytest.raises(download_manager.NonMatchingChecksumError) as info:
        builder.download_and_prepare()
    assert "Expected: UrlInfo(" in str(info.value)
    assert hashlib.sha256(FAKE_FILE).hexdigest() in str(info.value)
    assert serve_fake_files and all("mnist" in url for url in serve_fake_files)


def test_tfds_source_offline_is_a_data_error(tmp_path, no_network):
    cfg = DataConfig(source="tfds", name="mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError) as info:
        tfds_source(cfg)
    message = str(info.value)
    assert "'mnist'" in message
    assert "ConnectionError" in message
    assert "data.data_dir" in message

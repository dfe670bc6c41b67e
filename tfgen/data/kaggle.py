"""A Kaggle dataset slug ("owner/dataset"), fetched with `kagglehub` and read as a folder."""

from pathlib import Path

from tfgen.data.folder import folder_source
from tfgen.errors import DataError


def kaggle_source(cfg):
    """Download (or reuse kagglehub's cache of) `cfg.name`, then read `cfg.path` inside it."""
    manual = (
        f"or download https://www.kaggle.com/datasets/{cfg.name} yourself, unzip it and "
        "train with --set data.source=folder --set data.path=<the image folder>"
    )
    try:
        import kagglehub  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise DataError(
            f"data.source 'kaggle' needs kagglehub: pip install kagglehub and set up Kaggle "
            f"credentials (~/.kaggle/kaggle.json), {manual}"
        ) from None
    try:
        root = kagglehub.dataset_download(cfg.name)
    except Exception as exc:  # noqa: BLE001  (kagglehub raises many types: network, auth, 404)
        raise DataError(
            f"data.name: could not download Kaggle dataset {cfg.name!r} ({type(exc).__name__}: {exc}); {manual}"
        ) from None
    return folder_source(cfg, Path(root) / cfg.path)

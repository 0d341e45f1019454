"""Benchmark data sets: their registry, the data directory, and fetching with checksums.

The data (DMControl-GB colours and videos, DrawerWorld textures, augmentation backgrounds) is
never shipped with vai; it lives in a data directory chosen by ``resolve_data_dir`` and is
fetched from public sources by ``vai data fetch``. Modes call ``require`` so that missing data
fails early with the command that fixes it.
"""

from vai.data.registry import DATASETS, DataFile, Dataset, dataset_names, get_dataset
from vai.data.store import (
    ENV_VAR,
    FetchResult,
    FileCheck,
    Status,
    dataset_path,
    default_data_dir,
    fetch,
    require,
    resolve_data_dir,
    verify,
)

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "DataFile",
    "Dataset",
    "FetchResult",
    "FileCheck",
    "Status",
    "dataset_names",
    "dataset_path",
    "default_data_dir",
    "fetch",
    "get_dataset",
    "require",
    "resolve_data_dir",
    "verify",
]

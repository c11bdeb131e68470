"""Data: the one :class:`Dataset` abstraction, its registered sources, and the built-in sample sets.

Example:
    >>> from compressor.data import load_dataset
    >>> train = load_dataset("sample:digits-28:train")
    >>> for x, y in train.batches(32, shuffle=True, seed=0): ...
"""

from compressor.data.dataset import Dataset
from compressor.data.sources import SOURCES, DataSource, data_source, load_dataset

__all__ = ["SOURCES", "DataSource", "Dataset", "data_source", "load_dataset"]

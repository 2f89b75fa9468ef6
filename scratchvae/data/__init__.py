"""Data sets: the shipped digits, MNIST, Fashion-MNIST and binarized MNIST (:mod:`.datasets`), their file
formats (:mod:`.idx`), downloads (:mod:`.download`), and the user's own data by path (:mod:`.user`)."""
from .datasets import Dataset, load_dataset
from .user import DataError, load_data

__all__ = ["Dataset", "load_dataset", "load_data", "DataError"]

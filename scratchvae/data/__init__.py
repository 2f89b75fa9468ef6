"""Data sets: the shipped digits, MNIST, Fashion-MNIST and binarized MNIST (:mod:`.datasets`), their file
formats (:mod:`.idx`) and downloads (:mod:`.download`)."""
from .datasets import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]

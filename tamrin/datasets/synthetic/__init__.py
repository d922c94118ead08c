"""Synthetic datasets: generated demo data for every built-in task, no download, no files.

plates.py (OCR), shapes.py (image classification), text.py (sentiment and NER sentences) and
generation.py (string tasks), each drawn on demand from a generator seeded with (seed, split,
index); splits.py keeps the splits apart. Each registers its dataset name when imported.
"""

from __future__ import annotations

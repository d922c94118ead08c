"""Task datasets: the user's own data (files or a Hugging Face dataset) for each built-in task.

text_classification.py (and the shared text base), sequence_labeling.py, text_generation.py and
image_classification.py (image folders). Each registers its dataset name when imported.
"""

from __future__ import annotations

"""Training logs: the CSV/TensorBoard writer (logger.py), summaries and plots (review.py), progress output."""

"""The modality-neutral engine: what every task's model and loop share, importing no modality."""

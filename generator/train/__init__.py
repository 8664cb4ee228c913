"""Training a VQGAN and a transformer prior on your own images (``python -m generator train``),
written in the official checkpoint formats so every loader here (and elsewhere) can use them."""

"""The first stage: the decoder protocol every stage depends on, and the VQGAN's loader."""

"""The reconstruct mode: an image through a VQGAN and back, to see what its codebook keeps."""

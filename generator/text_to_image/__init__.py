"""CLIP-guided VQGAN (VQGAN+CLIP): the optimisation loop, its losses, cutouts, prompts and CLIP."""

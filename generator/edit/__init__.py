"""Edit: change part of an image (masks, region prompts, outpainting) with text to image."""

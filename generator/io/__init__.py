"""Files in and out: images, atomic never-overwriting writes, run folders and videos."""

"""The reconstruct mode: an image through a VQGAN and back, to see what its codebook keeps."""

from generator.mode import Mode
from generator.reconstruct.config import ReconstructConfig
from generator.reconstruct.outputs import ReconstructOutputs

RECONSTRUCT = Mode(
    name="reconstruct", title="Reconstruct",
    summary="an image through a VQGAN and back: what its codebook keeps (PSNR, codes used)",
    config=ReconstructConfig, outputs=ReconstructOutputs, command="reconstruct", cli="generator.reconstruct.cli",
    tab="generator.reconstruct.tab", api="reconstruct", job="generator.reconstruct.tab:reconstruct_job")

"""The train mode: a VQGAN, or a transformer prior over a VQGAN's codes, trained on your images."""

from generator.mode import Mode

TRAIN = Mode(
    name="train", title="Train", summary="train a VQGAN or a transformer prior on your own images",
    config=None, outputs=None, command="train", cli="generator.train.cli", tab="generator.train.tab",
    api="train", run_folders=False)

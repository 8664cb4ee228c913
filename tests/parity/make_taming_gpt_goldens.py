"""Regenerate tests/data/official_gpt_keys.json and tests/data/taming_gpt_parity.safetensors
from the ORIGINAL taming-transformers GPT (taming/modules/transformer/mingpt.py).

Not part of the test suite; run it once in a throwaway install, for example:

    pip install --no-deps --target /tmp/taming_pkg taming-transformers-rom1504==0.0.6
    PYTHONPATH=/tmp/taming_pkg:. .venv/bin/python tests/parity/make_taming_gpt_goldens.py

mingpt.py imports ``transformers.top_k_top_p_filtering`` (gone from current transformers); a
stand-in module is installed because the logits checked here never reach it. The script
records the key names and shapes of the released FFHQ/CelebA-HQ and FacesHQ/S-FLCKR/D-RIN
transformer sizes (built on the meta device), and, for small seeded models with and without
``n_unmasked``, the logits of ``forward`` and of incremental ``forward_with_past`` decoding.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.parity.seeded import seeded_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"
RELEASED = {
    "ffhq_transformer": dict(vocab_size=1024, block_size=256, n_layer=24, n_head=16, n_embd=1664),
    "faceshq_transformer": dict(vocab_size=1024, block_size=512, n_layer=24, n_head=16, n_embd=1024),
}
SMALL = {
    "small": dict(vocab_size=50, block_size=40, n_layer=2, n_head=4, n_embd=32),
    "small_unmasked": dict(vocab_size=50, block_size=40, n_layer=2, n_head=4, n_embd=32, n_unmasked=6),
}
SEED = 4321


def main() -> None:
    stand_in = types.ModuleType("transformers")
    stand_in.top_k_top_p_filtering = lambda logits, **kwargs: logits
    sys.modules["transformers"] = stand_in
    from taming.modules.transformer.mingpt import GPT

    keys: dict[str, dict[str, list[int]]] = {}
    for name, params in RELEASED.items():
        with torch.device("meta"):
            model = GPT(**params)
        keys[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
        print(f"{name}: {len(keys[name])} tensors, {sum(v.numel() for v in model.parameters()) / 1e6:.1f} M parameters")

    goldens: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(SEED)
    for name, params in SMALL.items():
        model = GPT(**params).eval()
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        state = seeded_state_dict({k: s for k, s in shapes.items() if not k.endswith("attn.mask")}, SEED)
        state.update({k: v for k, v in model.state_dict().items() if k.endswith("attn.mask")})  # the official buffers
        model.load_state_dict(state, strict=True)
        keys[name] = shapes
        idx = torch.randint(params["vocab_size"], (2, 30), generator=generator)
        with torch.no_grad():
            logits, _ = model(idx)
            prefix = 8
            step_logits, _, present = model.forward_with_past(idx[:, :prefix])
            past, incremental = [present], [step_logits]
            for position in range(prefix, idx.shape[1]):
                step_logits, _, present = model.forward_with_past(
                    idx[:, position : position + 1], past=past, past_length=position)
                past.append(present)
                incremental.append(step_logits)
        goldens[f"{name}.idx"] = idx
        goldens[f"{name}.logits"] = logits.contiguous()
        goldens[f"{name}.incremental_logits"] = torch.cat(incremental, dim=1).contiguous()
        print(f"{name}: logits {tuple(logits.shape)}")

    (DATA / "official_gpt_keys.json").write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    save_file(goldens, str(DATA / "taming_gpt_parity.safetensors"),
              metadata={"source": "taming-transformers-rom1504 0.0.6", "seed": str(SEED)})


if __name__ == "__main__":
    main()

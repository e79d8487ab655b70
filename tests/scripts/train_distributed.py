"""Train a small model on two DLPFC sections, under torchrun or alone, and record what the test compares.

Usage: ``torchrun --standalone --nproc_per_node 2 train_distributed.py DATA_DIR OUT_DIR`` (or plain python).
Each rank writes ``rank{R}.json`` with a checksum of its weights and the layer accuracy on a third section.
"""

import json
import sys
import warnings
from pathlib import Path

import anndata as ad
import torch

import omnist

warnings.filterwarnings("ignore", category=UserWarning)

data_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)
train = [ad.read_h5ad(data_dir / "dlpfc" / f"{name}.h5ad")[:400].copy() for name in ("151673", "151674")]
test = ad.read_h5ad(data_dir / "dlpfc" / "151675.h5ad")[:400].copy()
for adata in train:
    omnist.pp.build_instructions(adata, label_keys=["layer"], n_paraphrases=2)

config = omnist.OmniSTConfig(d_model=32, n_layers=1, n_heads=2, image_width=8, model_id="distributed-test")
model = omnist.tl.train(train, epochs=3, batch_size=32, n_genes=200, seed=0, config=config, progress=False)
omnist.tl.translate(test, "assign each spot to its cortical layer", model=model, key_added="pred", progress=False)
labelled = test.obs["layer"].notna()
accuracy = float((test.obs["pred"][labelled].astype(str) == test.obs["layer"][labelled].astype(str)).mean())
checksum = float(sum(parameter.double().sum() for parameter in model.backbone.parameters()))
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
(out_dir / f"rank{rank}.json").write_text(json.dumps({"accuracy": accuracy, "checksum": checksum}))
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()

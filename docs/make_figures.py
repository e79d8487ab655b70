"""Make the figure of the explanation guide: ``docs/_static/spatial_explain.png``.

A small model is trained on the pathologist regions and cell-type proportions of her2st sections A1-E1. It
explains the expression clusters of section C2, which has an H&E image, and the pathologist regions of the
held-out section F1, whose agreement with the pathologist is printed. Run from the repository root with
``OMNIST_DATA_DIR`` set:

    python docs/make_figures.py

Training took 8 s on one CPU thread of a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from pathlib import Path

import matplotlib
import numba
import torch
from PIL import Image

matplotlib.use("Agg")

import omnist  # noqa: E402

TRAIN_SECTIONS = ("A1", "B1", "C1", "D1", "E1")
TASKS = ("region_to_text", "expression_to_domain", "text_to_region", "expression_to_cell_type")
OUT = Path(__file__).resolve().parent / "_static" / "spatial_explain.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--region", default="cancer 1", help="C2 cluster to draw (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write (default: docs/_static/...)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch and numba (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # numba's parallel functions, which scanpy calls, reset the OpenMP thread count that torch reads.
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    sections = [omnist.datasets.her2st(name) for name in TRAIN_SECTIONS]
    for adata in sections:
        omnist.pp.build_instructions(adata, label_keys=["pathology"], proportion_keys=["proportions_major"])
    start = time.perf_counter()
    model = omnist.tl.train(
        sections,
        tasks=list(TASKS),
        n_genes=200,
        epochs=args.epochs,
        seed=args.seed,
        config=omnist.OmniSTConfig(d_model=32, n_layers=1, n_heads=2, image_width=8),
        progress=False,
    )
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s")

    held_out = omnist.datasets.her2st("F1")
    omnist.tl.explain(held_out, groupby="pathology", model=model, composition_key="proportions_major")
    regions = {name: record for name, record in held_out.uns["omnist_explain"].items() if name != "params"}
    correct = [name for name, record in regions.items() if record["identity"]["label"].iloc[0] == name]
    print(f"F1: top identity equals the pathologist region for {len(correct)} of {len(regions)} regions: {correct}")

    c2 = omnist.datasets.her2st("C2")
    omnist.tl.explain(c2, groupby="cluster_annotation", model=model, composition_key="proportions_major")
    params = c2.uns["omnist_explain"]["params"]
    key = dict(zip(params["groups"], params["keys"], strict=True))[args.region]
    print(c2.uns["omnist_explain"][key]["text"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure = omnist.pl.spatial_explain(c2, groupby="cluster_annotation", group=args.region, show=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    # A 256-colour palette keeps the PNG small enough to commit.
    Image.open(buffer).convert("RGB").quantize(colors=256).save(args.out, optimize=True)
    print(f"figure: {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

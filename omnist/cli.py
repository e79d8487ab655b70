"""The ``omnist`` command line: benchmark and demonstration."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _default_her2st() -> str | None:
    root = os.environ.get("OMNIST_DATA_DIR")
    return str(Path(root) / "her2st") if root else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnist", description="Instruction-driven multimodal models for spatial transcriptomics."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="run a benchmark on real data")
    tasks = bench.add_subparsers(dest="task", required=True)
    image = tasks.add_parser(
        "image-to-expression", parents=[common], help="leave-one-section-out H&E → expression on her2st"
    )
    image.add_argument(
        "--data-dir", default=_default_her2st(), help="folder of a her2st clone (default: $OMNIST_DATA_DIR/her2st)"
    )
    image.add_argument("--sections", nargs="+", default=None, help="sections to use (default: all with an image)")
    image.add_argument("--out", default="omnist_out/bench", help="folder for results.json (default: %(default)s)")
    image.add_argument("--epochs", type=int, default=20, help="training epochs per fold (default: %(default)s)")
    image.add_argument("--genes", type=int, default=250, help="number of top-expressed genes (default: %(default)s)")
    image.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    demo = commands.add_parser("demo", parents=[common], help="train on her2st C2–C5, translate C6, save a figure")
    demo.add_argument(
        "--data-dir", default=_default_her2st(), help="folder of a her2st clone (default: $OMNIST_DATA_DIR/her2st)"
    )
    demo.add_argument("--out", default="omnist_out/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if args.data_dir is None:
        print("omnist: error: pass --data-dir or set OMNIST_DATA_DIR", file=sys.stderr)
        return 2

    if args.command == "demo":
        from omnist.bench._demo import run_demo

        run_demo(args.data_dir, args.out, epochs=args.epochs, seed=args.seed)
        return 0

    from omnist.bench import format_table, image_to_expression, load_image_sections

    adatas = load_image_sections(args.data_dir, args.sections)
    results = {
        "image_to_expression": image_to_expression(adatas, n_genes=args.genes, epochs=args.epochs, seed=args.seed)
    }
    print(format_table("image_to_expression", results["image_to_expression"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

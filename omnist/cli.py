"""The ``omnist`` command line: benchmark and demonstration."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _default_her2st() -> str | None:
    root = os.environ.get("OMNIST_DATA_DIR")
    return str(Path(root) / "her2st") if root else None


def _default_data_dir() -> str | None:
    return os.environ.get("OMNIST_DATA_DIR")


def _add_task_parsers(tasks, common: argparse.ArgumentParser) -> None:
    """Add the label-task subcommands and ``all``; their --data-dir contains dlpfc/ and her2st/."""
    options = argparse.ArgumentParser(add_help=False, parents=[common])
    options.add_argument(
        "--data-dir",
        default=_default_data_dir(),
        help="folder that contains dlpfc/ and her2st/ (default: $OMNIST_DATA_DIR)",
    )
    options.add_argument("--out", default="omnist_out/bench", help="folder for results.json (default: %(default)s)")
    options.add_argument("--epochs", type=int, default=20, help="training epochs per model (default: %(default)s)")
    options.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    options.add_argument(
        "--genes", type=int, default=1000, help="gene vocabulary size of the omnist models (default: %(default)s)"
    )
    options.add_argument(
        "--max-spots", type=int, default=None, help="keep only the first N spots of each section (default: all)"
    )
    folds = argparse.ArgumentParser(add_help=False)
    folds.add_argument(
        "--folds",
        choices=("one", "all"),
        default="one",
        help="one: test DLPFC 151675 and her2st B1 only; all: test every section in turn (default: %(default)s)",
    )
    datasets = argparse.ArgumentParser(add_help=False)
    datasets.add_argument(
        "--dataset",
        nargs="+",
        choices=("dlpfc", "her2st"),
        default=["dlpfc", "her2st"],
        help="data sets to run (default: both)",
    )

    tasks.add_parser(
        "expression-to-domain",
        parents=[options, folds, datasets],
        help="transfer layer / pathology labels to held-out sections (omnist vs PCA + logistic regression)",
    )
    tasks.add_parser(
        "domains",
        parents=[options],
        help="k-means spatial domains of each DLPFC section (omnist embedding vs PCA, smoothed PCA); ARI",
    )
    tasks.add_parser(
        "text-to-region",
        parents=[options, folds],
        help="retrieve her2st pathologist regions from plain-language queries; AUROC and precision@k",
    )
    tasks.add_parser(
        "zero-shot",
        parents=[options, folds, datasets],
        help="find and assign a layer / region whose label training never saw (WM, adipose tissue)",
    )
    tasks.add_parser(
        "explain",
        parents=[options, folds, datasets],
        help="explain each labelled region of held-out sections; fraction named correctly (omnist vs logreg_pca)",
    )
    everything = tasks.add_parser(
        "all",
        parents=[options, folds, datasets],
        help="run every benchmark task into one results.json; the her2st image tasks test every section with an "
        "image, whatever --folds says",
    )
    everything.add_argument(
        "--skip-image-tasks",
        action="store_true",
        help="leave out image-to-expression and expression-to-image (the slowest tasks on a CPU)",
    )
    everything.add_argument(
        "--image-genes",
        type=int,
        default=250,
        help="number of top-expressed genes of image-to-expression and expression-to-image (default: %(default)s)",
    )


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
    image.add_argument(
        "--test-sections", nargs="+", default=None, help="held-out sections (default: every section in turn)"
    )
    image.add_argument(
        "--multitask",
        action="store_true",
        help="also train a model per fold on every task the sections' annotations support (omnist_multitask)",
    )
    retrieval = tasks.add_parser(
        "expression-to-image",
        parents=[common],
        help="leave-one-section-out retrieval of each spot's H&E patch from its expression on her2st",
    )
    retrieval.add_argument(
        "--data-dir", default=_default_her2st(), help="folder of a her2st clone (default: $OMNIST_DATA_DIR/her2st)"
    )
    retrieval.add_argument("--sections", nargs="+", default=None, help="sections to use (default: all with an image)")
    retrieval.add_argument("--out", default="omnist_out/bench", help="folder for results.json (default: %(default)s)")
    retrieval.add_argument("--epochs", type=int, default=20, help="training epochs per fold (default: %(default)s)")
    retrieval.add_argument(
        "--genes", type=int, default=250, help="number of top-expressed genes (default: %(default)s)"
    )
    retrieval.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    retrieval.add_argument(
        "--test-sections", nargs="+", default=None, help="held-out sections (default: every section in turn)"
    )
    _add_task_parsers(tasks, common)

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

    if args.task not in ("image-to-expression", "expression-to-image"):
        _run_tasks(args)
        return 0

    from omnist.bench import expression_to_image, format_table, image_to_expression, load_image_sections

    adatas = load_image_sections(args.data_dir, args.sections)
    options = {"n_genes": args.genes, "epochs": args.epochs, "seed": args.seed, "test_sections": args.test_sections}
    if args.task == "image-to-expression":
        name, record = "image_to_expression", image_to_expression(adatas, multitask=args.multitask, **options)
    else:
        name, record = "expression_to_image", expression_to_image(adatas, **options)
    print(format_table(name, record))
    from omnist.bench import write_results

    print(f"results: {write_results({name: record}, args.out)}")
    return 0


def _run_tasks(args: argparse.Namespace) -> None:
    """Run the label tasks that ``args.task`` names, print a table per task and write results.json."""
    from omnist.bench import DLPFC, HER2ST, ModelCache, format_table, write_results
    from omnist.bench._report import RESULTS_FILE

    data_dir = Path(args.data_dir)
    task = args.task
    datasets = getattr(args, "dataset", ["dlpfc", "her2st"])
    if task == "domains":
        datasets = ["dlpfc"]
    elif task == "text-to-region":
        datasets = ["her2st"]
    options = {"epochs": args.epochs, "seed": args.seed, "n_genes": args.genes}

    results: dict[str, dict] = {}

    def add(name: str, record: dict) -> None:
        # results.json is rewritten after every task, so a failure late in a long run keeps the finished tasks.
        results[name] = record
        print(format_table(name, record))
        print()
        write_results(results, args.out)

    for spec in (DLPFC, HER2ST):
        if spec.name not in datasets:
            continue
        adatas = _load_labelled(spec, data_dir, args.max_spots)
        test_sections = list(adatas) if getattr(args, "folds", "one") == "all" else [spec.test_section]
        models = ModelCache()
        if task in ("expression-to-domain", "all"):
            add(
                f"expression_to_domain_{spec.name}", _expression_to_domain(spec, adatas, test_sections, models, options)
            )
        if task in ("domains", "all") and spec.name == "dlpfc":
            add("domains_dlpfc", _domains(spec, adatas, models, options))
        if task in ("text-to-region", "all") and spec.name == "her2st":
            add("text_to_region_her2st", _text_to_region(spec, adatas, test_sections, models, options))
        if task in ("zero-shot", "all"):
            add(f"zero_shot_{spec.name}", _zero_shot(spec, adatas, test_sections, models, options))
        if task in ("explain", "all"):
            add(f"explain_{spec.name}", _explain(spec, adatas, test_sections, models, options))

    if task == "all" and "her2st" in datasets and not args.skip_image_tasks:
        from omnist.bench import expression_to_image, image_to_expression, load_image_sections

        image_sections = load_image_sections(data_dir / "her2st")
        image_options = {"n_genes": args.image_genes, "epochs": args.epochs, "seed": args.seed}
        add("image_to_expression", image_to_expression(image_sections, **image_options))
        add("expression_to_image", expression_to_image(image_sections, **image_options))

    print(f"results: {Path(args.out) / RESULTS_FILE}")


def _load_labelled(spec, data_dir: Path, max_spots: int | None) -> dict:
    from omnist.bench import load_dlpfc, load_pathology_sections

    if spec.name == "dlpfc":
        return load_dlpfc(data_dir / "dlpfc", spec.sections, max_spots)
    return load_pathology_sections(data_dir / "her2st", spec.sections, max_spots)


def _expression_to_domain(spec, adatas, test_sections, models, options) -> dict:
    from omnist.bench import expression_to_domain

    return expression_to_domain(
        adatas,
        label_key=spec.label_key,
        test_sections=test_sections,
        ignore_labels=spec.ignore_labels,
        instruction=spec.instruction,
        models=models,
        **options,
    )


def _domains(spec, adatas, models, options) -> dict:
    from omnist.bench import domains

    return domains(adatas, label_key=spec.label_key, models=models, **options)


def _text_to_region(spec, adatas, test_sections, models, options) -> dict:
    from omnist.bench import text_to_region

    return text_to_region(
        adatas,
        test_sections=test_sections,
        label_key=spec.label_key,
        ignore_labels=spec.ignore_labels,
        models=models,
        **options,
    )


def _explain(spec, adatas, test_sections, models, options) -> dict:
    from omnist.bench import explain_regions

    return explain_regions(
        adatas,
        label_key=spec.label_key,
        test_sections=test_sections,
        ignore_labels=spec.ignore_labels,
        models=models,
        **options,
    )


def _zero_shot(spec, adatas, test_sections, models, options) -> dict:
    from omnist.bench import zero_shot

    return zero_shot(
        adatas,
        label_key=spec.label_key,
        held_out_label=spec.zero_shot_label,
        query=spec.zero_shot_query,
        instruction=spec.instruction,
        test_sections=test_sections,
        ignore_labels=spec.ignore_labels,
        models=models,
        **options,
    )


if __name__ == "__main__":
    sys.exit(main())

"""vitcourse ablate: train a grid of variants over several seeds (an ablation, or tuning on a small subset)."""
HELP = ("Ablation or tuning grid: a model's options (ViT, CNNs) and training options (lr, weight decay) x seeds, "
        "one recipe and budget, a table with 95 percent intervals and the validation accuracy.")

import sys
from pathlib import Path


def add_arguments(parser):
    from data_utils.datasets import DATASETS
    from vitcourse.analysis.ablate import CNN_OPTIONS, TRAIN_OPTIONS, VIT_OPTIONS
    from vitcourse.training.recipes import MODELS

    parser.add_argument("--data", choices=DATASETS, default="digits", help="dataset (default digits)")
    parser.add_argument("--model", choices=MODELS, default="vit",
                        help="model whose default recipe every run starts from (default vit)")
    parser.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                        help=f"an axis of the grid (repeatable). Every model: {', '.join(TRAIN_OPTIONS)}, classes "
                             f"(e.g. classes=1+3+5+7+9). The ViT: {', '.join(VIT_OPTIONS)}. The CNNs: "
                             f"{', '.join(CNN_OPTIONS)} (arch: a network of cnn.CONFIGS). E.g. --grid "
                             "pos_embed=learnable,cosine --grid act=gelu,tanh, or --model mish_cnn --grid lr=1e-3,3e-3")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: the recipe's)")
    parser.add_argument("--budget-minutes", type=float, help="or a wall-clock budget per run")
    parser.add_argument("--classes", help="a class subset for every run, e.g. 1,3,5,7,9")
    parser.add_argument("--baseline", help="variant the others are compared with (default: the first)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (1: comparable timings)")
    parser.add_argument("--max-train", type=int, help="train on the first N images only (a pilot or tuning grid)")
    parser.add_argument("--subsets", choices=("nested", "disjoint"), default="nested",
                        help="--grid train_size=...: one seed's smaller sets inside its larger ones (nested, default), "
                             "or seeds that share no image (disjoint)")
    parser.add_argument("--data-dir", help="CIFAR folder (see vitcourse train --data-dir)")
    parser.add_argument("--no-verify", action="store_true", help="CIFAR: read --data-dir as it is")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-plot", action="store_true", help="skip the position-similarity figure (ViT only)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and the table (resumable)")


def run(args) -> int:
    import data_utils
    from vitcourse.analysis import ablate

    try:
        grid = ablate.parse_grid(args.grid, model=args.model)
        seeds = [int(s) for s in args.seeds.split(",")]
        classes = tuple(int(c) for c in args.classes.split(",")) if args.classes else None
    except (ablate.AblationError, ValueError) as err:
        print(f"vitcourse ablate: {err}", file=sys.stderr)
        return 2
    settings = ablate.Settings(data=args.data, data_dir=args.data_dir, verify=not args.no_verify,
                               epochs=args.epochs, budget_minutes=args.budget_minutes, max_train=args.max_train,
                               classes=classes, device=args.device, threads=args.threads, model=args.model,
                               subsets=args.subsets)
    variants = ablate.expand(grid)
    print(f"{len(variants)} variant(s) of {args.model} x {len(seeds)} seed(s) on {args.data}, results in {args.out}")
    try:
        results = ablate.run_grid(variants, seeds, settings, args.out)
        if args.baseline:
            ablate.write_outputs(args.out, results, baseline=args.baseline)
    except (ablate.AblationError, data_utils.DatasetUnavailableError, FileNotFoundError, ValueError) as err:
        print(f"vitcourse ablate: {err}", file=sys.stderr)
        return 2
    print((args.out / ablate.TABLE_MD).read_text())
    if len(variants) > 1 and all(r.get("best_val_acc") is not None for r in results):
        best = ablate.best_variant(results)
        print(f"best on validation: {best['variant']} ({100 * best['value']:.1f} mean over seeds "
              f"{', '.join(map(str, best['seeds']))}); its test accuracy is in the table")
    if not args.no_plot and args.model == "vit":
        _, path = ablate.plot_position_similarity(results, args.out)
        print(f"wrote {path}")
    return 0

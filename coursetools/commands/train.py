"""vitcourse train: train a ViT or ResNet-18 with the documented default recipe and write a JSON report."""
HELP = "Train a ViT or ResNet-18 on digits / CIFAR-10 / CIFAR-100 / synthetic data with the default recipe."

import dataclasses
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

TTA_CHOICES = ("auto", "on", "off")


def add_arguments(parser):
    from data_utils.datasets import DATASETS
    from vitcourse.training.recipes import MODELS
    from vitcourse.training.runtime import DEVICE_CHOICES, PRECISION_CHOICES
    from vitcourse.training.train import SELECT_EPOCHS

    parser.add_argument("--data", choices=DATASETS, default="digits",
                        help="dataset (digits and synthetic work offline; default digits)")
    parser.add_argument("--model", choices=MODELS, default="vit", help="model (default vit)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--budget-minutes", type=float, help="stop after the epoch that exhausts this budget")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} (default auto)")
    parser.add_argument("--json", type=Path, help="write config, hardware, history and accuracy here")
    parser.add_argument("--data-dir", type=Path,
                        help="CIFAR: folder of the archive, or of a CIFAR python-layout copy (with --no-verify)")
    parser.add_argument("--no-verify", action="store_true",
                        help="CIFAR: read --data-dir as it is, without checksums or download "
                             "(e.g. --data-dir ../shared/datasets/cifar10-mini)")
    parser.add_argument("--no-download", action="store_true", help="CIFAR: never try to download")
    parser.add_argument("--classes", type=lambda s: [int(c) for c in s.split(",")],
                        help="keep these classes only, renumbered 0..n-1 (e.g. 1,3,5,7,9)")
    parser.add_argument("--val-size", type=float, help="validation images (>= 1) or fraction (< 1)")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-path", choices=("device", "dataloader"), help="override the data path")
    parser.add_argument("--select-epoch", choices=SELECT_EPOCHS,
                        help="override which epoch is tested: the best on validation, or the last")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="auto",
                        help="flip test-time augmentation (auto: when the recipe trains with flips)")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="keep checkpoints here and resume from them (default: a temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import data_utils
    from vitcourse.training import recipes, runtime
    from vitcourse.training.train import confusion_matrix, evaluate, load_best, train

    val_size = None
    if args.val_size is not None:
        val_size = int(args.val_size) if args.val_size >= 1 else float(args.val_size)
    try:
        splits = data_utils.load_dataset(args.data, root=args.data_dir, val_size=val_size, classes=args.classes,
                                         seed=args.seed, verify=not args.no_verify, download=not args.no_download)
    except (data_utils.DatasetUnavailableError, FileNotFoundError, ValueError) as err:
        print(f"vitcourse train: {err}", file=sys.stderr)
        return 2
    model_cfg, cfg = recipes.default_recipe(args.data, args.model, splits.num_classes, splits.in_chans)
    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                       data_path=args.data_path, select_epoch=args.select_epoch).items() if v is not None}
    cfg = dataclasses.replace(cfg, budget_minutes=args.budget_minutes, device=args.device, seed=args.seed,
                              precision=args.precision, compile=args.compile, progress=not args.quiet, **overrides)
    try:
        device = runtime.pick_device(cfg.device)
        runtime.choose_precision(device, cfg.precision)
    except (RuntimeError, ValueError) as err:
        print(f"vitcourse train: {err}", file=sys.stderr)
        return 2
    runtime.seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = recipes.build_model(args.model, model_cfg)
    num_params = sum(p.numel() for p in model.parameters())
    print(splits.summary())
    print(f"{args.model}: {num_params:,} parameters on {device} ({runtime.choose_precision(device, cfg.precision).name})"
          + (" [fast mode]" if runtime.fast_mode() else ""))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint_dir if args.checkpoint_dir is not None else Path(tmp)
        result = train(model, splits, cfg, checkpoint_dir=ckpt)
        if len(splits.val_labels):
            load_best(model, result)  # test the epoch the recipe selects (best on validation, or the last)
    tta = args.tta == "on" or (args.tta == "auto" and cfg.augment.flip_prob > 0)
    test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std,
                    batch_size=cfg.eval_batch_size, tta=tta, precision=cfg.precision)
    wall = time.perf_counter() - start
    chosen = "best validation" if cfg.select_epoch == "best_val" else "validation"
    print(f"test accuracy {test.accuracy:.2%} ({chosen} {result.best_val_acc:.2%} at epoch "
          f"{result.best_epoch}, {len(result.history)} epochs, {wall:.1f} s)")

    if args.json is not None:
        report = {
            "config": {"data": args.data, "model": args.model, "model_config": model_cfg, "train": cfg.to_dict(),
                       "data_dir": str(args.data_dir) if args.data_dir else None, "verify": not args.no_verify,
                       "classes": args.classes, "tta": tta, "fast_mode": runtime.fast_mode()},
            "dataset": {"train": len(splits.train_labels), "val": len(splits.val_labels),
                        "test": len(splits.test_labels), "class_names": list(splits.class_names)},
            "hardware": runtime.hardware_info(device),
            "history": result.history,
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "test_accuracy": test.accuracy,
            "test_loss": test.loss,
            "confusion_matrix": confusion_matrix(test.predictions, test.labels, splits.num_classes).tolist(),
            "wall_time_s": wall,
            "num_parameters": num_params,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=_json_default))
        print(f"wrote {args.json}")
    return 0


def _json_default(value):
    if isinstance(value, float) and value != value:
        return None
    return str(value)

"""vitcourse transfer: fine-tune a pretrained backbone in several modes (or run the offline demo), write JSON."""
HELP = "Transfer learning: fine-tune a pretrained ViT / Swin / ResNet-50 in the modes head, partial, full, scratch, probe."

import dataclasses
import json
import sys
from pathlib import Path


def add_arguments(parser):
    from data_utils.datasets import DATASETS
    from vitcourse.training.transfer import DEFAULT_BACKBONE_LR_SCALE, DEFAULT_PARTIAL_BLOCKS, MODES

    parser.add_argument("--data", choices=DATASETS, default="cifar10", help="downstream dataset (default cifar10)")
    parser.add_argument("--backbone", default="vit_small_patch16_224",
                        help="timm model name (vit_small_patch16_224, swin_tiny_patch4_window7_224, ...) or resnet50")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--weights", type=Path, help="local weights file (no download); required offline")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every trained mode (default 3)")
    parser.add_argument("--img-size", type=int, help="build the model for this input size (position tables "
                                                      "resampled) and resize the images to it")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the head (default 1e-3)")
    parser.add_argument("--backbone-lr-scale", type=float, default=DEFAULT_BACKBONE_LR_SCALE,
                        help=f"full mode: backbone lr = this x lr (default {DEFAULT_BACKBONE_LR_SCALE})")
    parser.add_argument("--partial-blocks", type=int, default=DEFAULT_PARTIAL_BLOCKS,
                        help=f"partial mode: train the last k blocks (default {DEFAULT_PARTIAL_BLOCKS})")
    parser.add_argument("--shots", type=int, help="keep this many training images per class")
    parser.add_argument("--classes", type=lambda s: [int(c) for c in s.split(",")], help="keep these classes only")
    parser.add_argument("--data-dir", type=Path, help="CIFAR folder (see vitcourse train)")
    parser.add_argument("--no-verify", action="store_true", help="CIFAR: read --data-dir without checksums")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", action="store_true",
                        help="the offline experiment: pretrain a small ViT and Swin on digits 0-4 in four "
                             "rotations, fine-tune on 10 images per class of digits 5-9 in every mode "
                             "(ignores --data/--backbone/--weights)")
    parser.add_argument("--seeds", default="0", help="--demo: comma-separated seeds (default 0)")
    parser.add_argument("--archs", default="vit,swin", help="--demo: comma-separated, from vit, swin, swin_s, cnn")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/transfer-demo"),
                        help="--demo: the upstream weights are cached here, one file per recipe and seed")
    parser.add_argument("--fresh-upstream", action="store_true",
                        help="--demo: pretrain again even when a cached file of the same recipe exists")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest for these tiny models on a busy CPU)")
    parser.add_argument("--json", type=Path, help="write the report here")


def run(args) -> int:
    import data_utils
    from vitcourse.training import runtime
    from vitcourse.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, WeightsUnavailableError
    from vitcourse.training.train import TrainConfig
    from vitcourse.training import transfer as T

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in T.MODES]
    if unknown:
        print(f"vitcourse transfer: unknown modes {unknown}: choose from {', '.join(T.MODES)}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.demo:
        from vitcourse.training import transfer_demo as D

        seeds = [int(s) for s in args.seeds.split(",")]
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        bad = [a for a in archs if a not in D.DEMO_ARCHS]
        if bad:
            print(f"vitcourse transfer --demo: unknown archs {bad}: choose from {', '.join(D.DEMO_ARCHS)}",
                  file=sys.stderr)
            return 2
        cfg = dataclasses.replace(D.FINETUNE_CONFIG, device=args.device)
        report = D.offline_demo(args.out_dir, archs=archs, modes=modes, seeds=seeds, finetune_cfg=cfg,
                                pretrain_cfg=dataclasses.replace(D.PRETRAIN_CONFIG, device=args.device),
                                reuse_upstream=not args.fresh_upstream)
        print(D.format_summary(report))
        print(f"whole run: {report['wall_time_s']:.0f} s")
        return _write(args.json, report)

    try:
        splits = data_utils.load_dataset(args.data, root=args.data_dir, classes=args.classes, seed=args.seed,
                                         verify=not args.no_verify)
    except (data_utils.DatasetUnavailableError, FileNotFoundError, ValueError) as err:
        print(f"vitcourse transfer: {err}", file=sys.stderr)
        return 2
    if args.shots:
        from vitcourse.training.transfer_demo import few_shot

        splits = few_shot(splits, args.shots, args.seed)
    if splits.in_chans == 3:  # ImageNet backbones expect ImageNet's normalisation
        splits = dataclasses.replace(splits, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    spec = T.BackboneSpec(args.backbone, weights=str(args.weights) if args.weights else None,
                          img_size=args.img_size, input_size=args.img_size)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=min(1.0, args.epochs),
                      augment=data_utils.AugmentConfig(crop_prob=0.0, flip_prob=0.5 if args.data != "digits" else 0.0),
                      device=args.device, seed=args.seed)
    try:
        results = T.run_transfer(splits, spec, modes, cfg, partial_blocks=args.partial_blocks,
                                 backbone_lr_scale=args.backbone_lr_scale)
    except WeightsUnavailableError as err:
        print(f"vitcourse transfer: {err}", file=sys.stderr)
        return 2
    for r in results:
        mem = f", peak GPU {r.peak_gpu_mem_mib:.0f} MiB" if r.peak_gpu_mem_mib is not None else ""
        a = r.attention
        attn = "" if a is None else (f"  CLS attention mean {a['mean']:.4f} std {a['std']:.4f}, 50% of it on "
                                     f"{a['mass_fraction']:.0%} of the patches, centre/edge {a['centre_edge_ratio']:.2f}")
        print(f"{r.mode:8s} test {r.test_accuracy:.2%}  trainable {r.trainable_params:,} / {r.total_params:,}  "
              f"{r.epoch_time_s:.1f} s/epoch{mem}{attn}")
    report = {"data": args.data, "backbone": args.backbone, "weights": str(args.weights) if args.weights else None,
              "img_size": args.img_size, "train": cfg.to_dict(), "hardware": runtime.hardware_info(
                  runtime.pick_device(args.device)), "modes": [r.to_dict() for r in results]}
    return _write(args.json, report)


def _write(path, report) -> int:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=lambda v: None if v != v else str(v)))
        print(f"wrote {path}")
    return 0

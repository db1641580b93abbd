"""vitcourse profile: a few training steps under torch.profiler, the step-time breakdown and a trace."""
HELP = "Profile training steps of a model: kernel / memcpy / memset / data loading / CPU / other, and a trace."

import json
import sys
from pathlib import Path

PROFILE_MODELS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16", "resnet18", "vit")


def add_arguments(parser):
    parser.add_argument("--model", choices=PROFILE_MODELS, default="mish_cnn", help="model (default mish_cnn)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--steps", type=int, default=3, help="active (measured) steps (default 3)")
    parser.add_argument("--wait", type=int, default=1, help="steps before tracing (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="traced but discarded steps (default 1)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 16 on CPU, 128 on GPU)")
    parser.add_argument("--image-size", type=int, default=32, help="H = W of the random images (default 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--trace", type=Path,
                        help="write the Chrome / Perfetto trace here (default: next to --json, else not kept)")


def build(model: str, image_size: int, num_classes: int = 10):
    """The profiled model: a CNN of the CNN assignment, ResNet-18 (CIFAR form) or the CIFAR recipe's ViT."""
    from vitcourse.training import recipes
    from vitcourse.models import cnn

    if model in cnn.NETWORKS:
        return cnn.build(model, image_size=image_size, num_classes=num_classes)
    if model == "resnet18":
        return recipes.build_model("resnet18", dict(num_classes=num_classes))
    config = dict(recipes.default_recipe("cifar10", "vit")[0], image_size=image_size, num_classes=num_classes)
    return recipes.build_model("vit", config)


def random_loader(num_images: int, batch_size: int, image_size: int, num_workers: int = 0, num_classes: int = 10):
    """A DataLoader over random CIFAR-sized images: the classic data path, with nothing to download."""
    import torch

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(num_images, 3, image_size, image_size, generator=g),
                                          torch.randint(0, num_classes, (num_images,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                       drop_last=True)


def run(args) -> int:
    from vitcourse.training import runtime
    from vitcourse.analysis.profile import default_batch_size, profile_training

    try:
        device = runtime.pick_device(args.device)
        if args.steps < 1:
            raise ValueError(f"--steps {args.steps}: profile at least 1 step")
        batch = args.batch_size or default_batch_size(device)
        model = build(args.model, args.image_size)
    except (RuntimeError, ValueError) as err:
        print(f"vitcourse profile: {err}", file=sys.stderr)
        return 2
    trace = args.trace or (args.json.with_suffix(".trace.json") if args.json else None)
    total = args.wait + args.warmup + args.steps
    loader = random_loader(batch * total, batch, args.image_size, args.num_workers)
    report = profile_training(model, loader, device=device, wait=args.wait, warmup=args.warmup, active=args.steps,
                              trace_path=trace, channels_last=args.channels_last)
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, batch {batch} of "
          f"{args.image_size}x{args.image_size}, {report.steps} active steps on {report.device}")
    print(report.table())
    if report.gpu_utilization is not None:
        print(f"GPU utilisation (a kernel running): {report.gpu_utilization:.1%}")
    for line in report.absent:
        print(f"  absent: {line}")
    if report.trace_path:
        print(f"trace: {report.trace_path} (open in https://ui.perfetto.dev or chrome://tracing)")
    if args.json is not None:
        out = dict(report.to_dict(), model=args.model, batch_size=batch, image_size=args.image_size,
                   channels_last=args.channels_last, hardware=runtime.hardware_info(device))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0

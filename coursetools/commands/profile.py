"""vitcourse profile: a few training steps under torch.profiler, the step-time breakdown and a trace."""
HELP = "Profile training steps of a model: kernel / memcpy / memset / data loading / CPU / other, and a trace."

import json
import sys
from pathlib import Path

from vitcourse.analysis.profile import PROFILE_MODELS


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


def run(args) -> int:
    from vitcourse.training import runtime
    from vitcourse.analysis.profile import build_profiled_model, default_batch_size, profile_training, random_loader

    try:
        device = runtime.pick_device(args.device)
        if args.steps < 1:
            raise ValueError(f"--steps {args.steps}: profile at least 1 step")
        batch = args.batch_size or default_batch_size(device)
        model = build_profiled_model(args.model, args.image_size)
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

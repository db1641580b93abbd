"""vitcourse complexity: closed-form parameters and FLOPs per component, or the assignment's sweep table."""
HELP = "Parameters and FLOPs per component of a ViT or ResNet-18 (closed form); --sweep times the assignment's models."

import json
import sys

from vitcourse.analysis import complexity

VIT_OPTIONS = ("image_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias",
               "pos_embed", "pool")


def _image_size(text: str):
    """'32' -> 32, '32x48' -> (32, 48)."""
    import argparse

    parts = text.lower().replace("×", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes, default=0) < 1:
        raise argparse.ArgumentTypeError(f"image size {text!r} must be a positive integer H or HxW, e.g. 32 or 32x48")
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def add_arguments(parser):
    model = parser.add_argument_group("model (defaults: the ViTConfig defaults)")
    model.add_argument("--model", default="vit", help="vit, resnet18 (= resnet18_cifar), resnet18_imagenet, or a CNN of the CNN "
                            "assignment: " + ", ".join(complexity.CNN_MODELS))
    model.add_argument("--image-size", type=_image_size, help="H or HxW in pixels (default 32)")
    model.add_argument("--patch-size", type=int, help="P")
    model.add_argument("--in-chans", type=int, help="C")
    model.add_argument("--embed-dim", type=int, help="D")
    model.add_argument("--depth", type=int, help="encoder blocks")
    model.add_argument("--num-heads", type=int, help="h")
    model.add_argument("--mlp-ratio", type=float, help="MLP hidden width / D")
    model.add_argument("--no-qkv-bias", dest="qkv_bias", action="store_false", default=None, help="qkv without bias")
    model.add_argument("--pos-embed", help="learnable, cosine, sincos2d or none")
    model.add_argument("--pool", help="token (class token) or mean")
    model.add_argument("--num-classes", type=int, action="append",
                       help="K (default 10); repeat for the sweep (default: 10 and 100)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--check", action="store_true",
                     help="also build the model and compare with numel(), FlopCounterMode and module hooks")
    out.add_argument("--out", metavar="DIR",
                     help="write complexity.json, or with --sweep sweep.csv, sweep.md and the plots (PNG), to DIR")
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--sweep", action="store_true", help="the assignment's 16 ViTs + 2 ResNet-18 forms per head")
    sweep.add_argument("--no-measure", dest="measure", action="store_false",
                       help="closed forms only (instant); default: time every model")
    sweep.add_argument("--batch-size", type=int, help="images per timed step (default 8 on CPU, 128 on GPU)")
    sweep.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (default 1)")
    sweep.add_argument("--steps", type=int, default=2, help="timed steps per model; the median counts (default 2)")
    sweep.add_argument("--epoch-images", type=int, default=45_000, help="images per epoch for time/epoch")
    sweep.add_argument("--real-epoch", action="store_true", help="time a whole epoch instead of extrapolating (slow)")
    sweep.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sweep.add_argument("--results", nargs="+", metavar="PATH",
                       help="`vitcourse.training.train --json` files or folders: adds the accuracy column")


def _given_vit_options(args) -> dict:
    return {name: getattr(args, name) for name in VIT_OPTIONS if getattr(args, name) is not None}


def _print_breakdown(summary: dict) -> None:
    rows = summary["components"]
    width = max(len(r["component"]) for r in rows) + 2
    print(f"{'component':<{width}}{'params':>14}{'MACs/image':>16}{'FLOPs/image':>16}  formula (params ; MACs)")
    for r in rows:
        print(f"{r['component']:<{width}}{r['params']:>14,}{r['macs']:>16,}{r['flops']:>16,}  {r.get('formula', '')}")
    print(f"\n{summary['params']:,} parameters, {summary['gflops']:.3f} GFLOPs per image forward "
          f"({summary['macs'] / 1e9:.3f} GMACs); a training step ≈ "
          f"{complexity.FLOPS_PER_MAC * summary['training_macs'] / 1e9:.3f} GFLOPs per image.")
    print(f"Convention: {summary['convention']}.")


def _describe(summary: dict, options: dict) -> str:
    from autograder.quiz import folded_cnn_parameters  # the grader's answer key: this command is the instructor's

    c = summary["config"]
    if summary["model"] in complexity.CNN_MODELS:
        return (f"{summary['model']}: stages {c['stages']}, {c['kernel_size']}x{c['kernel_size']} convs"
                f"{' + BN' if c['batch_norm'] else ''}, {c['act']}, {c['image_size']} px, K = {c['num_classes']}; "
                f"{folded_cnn_parameters(complexity.cnn_config(summary['model'], **options)):,} parameters once the "
                "batch norms are folded")
    if summary["model"] != "vit":
        return f"ResNet-18 ({c['form']} form), {c['image_size']} px images, K = {c['num_classes']}"
    cfg = complexity.vit_config(**c)
    H, W = cfg.image_hw
    prefix = " + class token" if cfg.num_prefix_tokens else ""
    return (f"ViT P{cfg.patch_size} D{cfg.embed_dim} depth {cfg.depth} h{cfg.num_heads} (d = {cfg.head_dim}), "
            f"{H}x{W} images, K = {cfg.num_classes}: N = {cfg.num_tokens} tokens ({cfg.num_patches} patches{prefix}); "
            f"block rows are summed over the {cfg.depth} blocks")


def _print_check(summary: dict, check: dict) -> None:
    def verdict(a, b):
        return "matches" if a == b else f"differs by {a - b:+,}"

    print("\nCounted on the built model (batch of 1):")
    print(f"  sum(p.numel())                       {check['numel']:>16,}  {verdict(check['numel'], summary['params'])}")
    print(f"  FlopCounterMode, manual attention    {check['flop_counter_manual']:>16,}  "
          f"{verdict(check['flop_counter_manual'], summary['flops'])}")
    print(f"  FlopCounterMode, fused attention     {check['flop_counter_fused']:>16,}  "
          f"{verdict(check['flop_counter_fused'], summary['flops'])} (counted as 0 on CPU by torch <= 2.13: pytorch#195460)")
    print(f"  module hooks (torchinfo-style), FLOPs{check['module_hooks']:>16,}  "
          f"{verdict(check['module_hooks'], summary['flops'])} (q·kᵀ and softmax·v belong to no module)")


def _run_single(args) -> int:
    options = _given_vit_options(args)
    classes = args.num_classes or [10]
    if len(classes) > 1:
        raise ValueError("give one --num-classes for a single model (several are for --sweep)")
    model = args.model.lower() if args.model.lower() in complexity.CNN_MODELS else complexity.canonical_model(args.model)
    if model in complexity.CNN_MODELS:
        vit_only = sorted(set(options) - {"image_size", "in_chans"})
        if vit_only:
            flags = ", ".join("--" + o.replace("_", "-") for o in vit_only)
            raise ValueError(f"only a ViT takes {flags}: {model}'s sizes are its ConvNetConfig (drop them)")
        if isinstance(options.get("image_size"), tuple):
            raise ValueError("the CNNs take square images: give --image-size as one number")
    elif model != "vit":
        vit_only = sorted(set(options) - {"image_size", "in_chans"})
        if vit_only:
            flags = ", ".join("--" + o.replace("_", "-") for o in vit_only)
            raise ValueError(f"only a ViT takes {flags}: ResNet-18 has fixed sizes (drop them or use --model vit)")
    summary = (complexity.cnn_complexity if model in complexity.CNN_MODELS else complexity.model_complexity)(
        model, num_classes=classes[0], **options)
    check = complexity.measured(summary) if args.check else None
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "complexity.json").write_text(json.dumps(dict(summary, check=check), indent=2), encoding="utf-8")
        print(f"wrote {out / 'complexity.json'}", file=sys.stderr)
    if args.json:
        print(json.dumps(dict(summary, check=check) if check else summary, indent=2))
        return 0
    print(_describe(summary, dict(options, num_classes=classes[0])) + "\n")
    _print_breakdown(summary)
    if check:
        _print_check(summary, check)
    return 0


def _run_sweep(args) -> int:
    from vitcourse.analysis import sweep

    if _given_vit_options(args) or args.model != "vit":
        raise ValueError("--sweep runs the assignment's fixed grid; drop the model options (or run without --sweep)")
    specs = sweep.assignment_specs(num_classes=tuple(args.num_classes or sweep.DATASET_CLASSES.values()))
    settings = sweep.MeasureSettings(batch_size=args.batch_size, warmup_steps=args.warmup, timed_steps=args.steps,
                                     epoch_images=args.epoch_images, real_epoch=args.real_epoch, device=args.device)
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if args.measure else None
    rows = sweep.run_sweep(specs, settings, measure_models=args.measure, progress=progress)
    if args.results:
        skipped = lambda line: print(line, file=sys.stderr)  # noqa: E731
        rows = sweep.attach_results(rows, sweep.load_training_results(args.results, on_skip=skipped))
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=2))
    else:
        print(sweep.to_markdown(rows))
        if args.measure:
            print(f"\nTime/epoch = {rows[0]['epoch_method']} on {rows[0]['device']}; peak memory: "
                  f"{rows[0]['memory_method']}. GFLOPs: forward, one image, 2 FLOPs per multiply-add.")
    if args.out:
        for path in sweep.save_outputs(rows, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def run(args) -> int:
    try:
        return _run_sweep(args) if args.sweep else _run_single(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:  # RuntimeError: no GPU, GPU too small
        print(f"vitcourse complexity: error: {err}", file=sys.stderr)
        return 2

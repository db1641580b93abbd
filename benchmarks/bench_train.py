"""Time-to-accuracy of the default recipes, and training throughput of the two data paths.

    python benchmarks/bench_train.py --suite digits                  # CPU: reference ViT (+ ResNet-18)
    python benchmarks/bench_train.py --suite mini [--epochs N]       # real CIFAR-10 subset (shared/)
    python benchmarks/bench_train.py --suite full --data-dir DIR     # full CIFAR-10/100 when the archive is there
    python benchmarks/bench_train.py --suite throughput              # synthetic CIFAR-shaped data (GPU or CPU)

Every suite prints, per model, the training time, the time to reach the target accuracy (training clock:
the sum of the epoch times, evaluation of the test set excluded) and the final test accuracy, plus ratios
measured side by side in this one run. Accuracy needs real images: the throughput suite reports images/s
and how busy the data path lets the accelerator be, never an accuracy.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
import torch.nn.functional as F
from _common import SHARED_CIFAR10_MINI, header, timed, write_json

import data_utils as du
from vitcourse.training import recipes, runtime
from vitcourse.training.train import evaluate, train

# Targets of the issue (accuracy, seconds) per (data, model); measured here, reported either way.
TARGETS = {("digits", "vit"): (0.97, 60), ("cifar10", "vit"): (0.85, 600), ("cifar10", "resnet18"): (0.93, 300),
           ("cifar100", "vit"): (0.60, 1800)}
THROUGHPUT_IMAGES = 10_240  # synthetic CIFAR-shaped images of the throughput suite
THROUGHPUT_STEPS = 20  # timed training steps per measurement
WARMUP_STEPS = 3  # untimed steps (cuDNN autotuning, first kernels, worker start-up)


def time_to_accuracy(data: str, model_name: str, splits, device, epochs=None, budget=None, compile_=False,
                     seed=0):
    """Train the default recipe, evaluating the test set after every epoch (outside the training clock)."""
    model_cfg, cfg = recipes.default_recipe(data, model_name, splits.num_classes, splits.in_chans)
    cfg = dataclasses.replace(cfg, device=str(device), progress=False, compile=compile_, seed=seed,
                              epochs=epochs or cfg.epochs, budget_minutes=budget)
    runtime.seed_everything(cfg.seed)
    model = recipes.build_model(model_name, model_cfg)
    tta = cfg.augment.flip_prob > 0
    test_curve = []

    def on_epoch_end(epoch, record):
        acc = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std,
                       batch_size=cfg.eval_batch_size, tta=tta).accuracy
        test_curve.append(acc)
        clock = sum(r["epoch_time_s"] for r in result_so_far(record))
        print(f"      {data} {model_name} epoch {epoch}: training clock {clock:.1f} s, test {acc:.2%}", flush=True)

    history = []

    def result_so_far(record):
        history.append(record)  # long runs (CIFAR on a CPU) show their progress epoch by epoch
        return history

    result = train(model, splits, cfg, on_epoch_end=on_epoch_end)
    clock = [sum(r["epoch_time_s"] for r in result.history[:i + 1]) for i in range(len(result.history))]
    target_acc, target_s = TARGETS.get((data, model_name), (None, None))
    reached = next((t for t, a in zip(clock, test_curve) if target_acc is not None and a >= target_acc), None)
    row = {"data": data, "model": model_name, "epochs": len(result.history), "train_s": clock[-1],
           "test_acc": test_curve[-1], "best_test_acc": max(test_curve), "test_curve": test_curve,
           "target_acc": target_acc, "target_s": target_s, "time_to_target_s": reached,
           "num_parameters": sum(p.numel() for p in model.parameters()), "tta": tta,
           "precision": runtime.choose_precision(device, cfg.precision).name}
    hit = ("reached in %.0f s" % reached) if reached is not None else "not reached"
    goal = f"target {target_acc:.0%} in {target_s} s: {hit}" if target_acc is not None else "no target"
    print(f"   {data:>9} {model_name:>8}: {row['epochs']:>3} epochs, {clock[-1]:7.1f} s, test {test_curve[-1]:.2%}"
          f" (best {max(test_curve):.2%}); {goal}")
    return row


def throughput(model_name: str, device, batch_size: int, workers: int):
    """Training images/s with each data path and with a pre-loaded batch (the model alone)."""
    x, y = du.synthetic_dataset(THROUGHPUT_IMAGES, num_classes=10, image_size=32, in_chans=3)
    model_cfg, cfg = recipes.default_recipe("cifar10", model_name)
    model = recipes.build_model(model_name, model_cfg).to(device)
    channels_last = model_name == "resnet18" and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    prec = runtime.choose_precision(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scaler = prec.grad_scaler(device)
    aug, mean, std = recipes.CIFAR_AUGMENT, du.CIFAR10_MEAN, du.CIFAR10_STD

    def step(xb, yb):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with prec.autocast(device):
            loss = F.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def run(batches, steps):
        it = iter(batches)
        for _ in range(steps):
            try:
                xb, yb = next(it)
            except StopIteration:
                it = iter(batches)
                xb, yb = next(it)
            step(xb, yb)

    loaders = {
        "device": du.DeviceLoader(x, y, batch_size, mean=mean, std=std, augment=aug, shuffle=True,
                                  drop_last=True, device=device),
        "dataloader": du.make_dataloader(x, y, batch_size, mean=mean, std=std, augment=aug, shuffle=True,
                                         num_workers=workers, drop_last=True),
    }
    fixed = next(iter(loaders["device"]))
    rates = {}
    # The model alone is timed first and last (the best of the two counts): the first steps of a process
    # run slower (allocator, kernel selection), which would otherwise flatter the data paths.
    for name, batches in (("model only", [fixed]), *loaders.items(), ("model only", [fixed])):
        run(batches, WARMUP_STEPS)
        rate = THROUGHPUT_STEPS * batch_size / timed(lambda: run(batches, THROUGHPUT_STEPS), device)
        rates[name] = max(rate, rates.get(name, 0.0))
    # The model-only rate is what the accelerator can do; a data path's share of it is how busy it stays.
    busy = {name: rates[name] / rates["model only"] for name in loaders}
    print(f"   {model_name:>8} ({prec.name}, batch {batch_size}): " + ", ".join(
        f"{n} {r:,.0f} img/s" for n, r in rates.items()))
    print(f"            busy fraction (data path rate / model-only rate): "
          + ", ".join(f"{n} {b:.0%}" for n, b in busy.items())
          + f"; device / DataLoader = {rates['device'] / rates['dataloader']:.1f}x")
    return {"model": model_name, "batch_size": batch_size, "images_per_s": rates, "busy_fraction": busy,
            "precision": prec.name}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("digits", "mini", "full", "throughput"), default="digits")
    parser.add_argument("--models", default=None, help="comma-separated (default: vit for digits on CPU, "
                                                        "vit,resnet18 otherwise)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, help="override the recipes' epochs")
    parser.add_argument("--budget-minutes", type=float, help="stop each run after this budget")
    parser.add_argument("--data-dir", help="full suite: folder with the CIFAR archives")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--batch-size", type=int, default=512, help="throughput suite batch size")
    parser.add_argument("--workers", type=int, default=2, help="throughput suite DataLoader workers")
    parser.add_argument("--seeds", type=int, default=1, help="digits suite: repeat with this many seeds")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.pick_device(args.device)
    info = header(f"training benchmark: suite {args.suite}", device)
    default_models = "vit" if args.suite == "digits" and device.type == "cpu" else "vit,resnet18"
    models = (args.models or default_models).split(",")
    rows = []
    if args.suite == "throughput":
        for name in models:
            rows.append(throughput(name, device, args.batch_size, args.workers))
        if device.type != "cuda":
            print("   (no GPU here: these are CPU numbers; accuracy targets need the real archive and a GPU)")
    elif args.suite == "digits":
        for seed in range(args.seeds):
            splits = du.load_dataset("digits", seed=seed)
            for name in models:
                rows.append(time_to_accuracy("digits", name, splits, device, args.epochs, args.budget_minutes,
                                             args.compile, seed) | {"seed": seed})
        if args.seeds > 1:
            for name in models:
                accs = [r["test_acc"] for r in rows if r["model"] == name]
                times = [r["train_s"] for r in rows if r["model"] == name]
                print(f"   {name}: test accuracy median {statistics.median(accs):.2%} (min {min(accs):.2%}), "
                      f"training time median {statistics.median(times):.1f} s over {len(accs)} seeds")
    elif args.suite == "mini":
        if not SHARED_CIFAR10_MINI.is_dir():
            print(f"   {SHARED_CIFAR10_MINI} is not present: nothing to measure")
            return 0
        splits = du.load_dataset("cifar10", root=SHARED_CIFAR10_MINI, verify=False)
        print(f"   {splits.summary()} (a 10% subset: accuracies are far below full-CIFAR ones)")
        for name in models:
            rows.append(time_to_accuracy("cifar10", name, splits, device, args.epochs, args.budget_minutes,
                                         args.compile) | {"dataset": "cifar10-mini"})
    else:
        for data in ("cifar10", "cifar100"):
            try:
                splits = du.load_dataset(data, root=args.data_dir, download=False)
            except du.DatasetUnavailableError as err:
                print(f"   {data}: skipped, {str(err).splitlines()[0]}")
                continue
            for name in models:
                rows.append(time_to_accuracy(data, name, splits, device, args.epochs, args.budget_minutes,
                                             args.compile))
    write_json(args.json, {"hardware": info, "suite": args.suite, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CNN assignment benchmarks: the inference speed-up of folding batch norms, where a training step's time goes
(Mish CNN vs BN CNN vs VGG-16 at 32 px), and batch norm's head start in early training on digits.

Side-by-side ratios in one process (unfolded and folded timed alternately), as in every benchmark here.
    python benchmarks/bench_cnn.py [--json OUT] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from _common import header, timed, write_json  # noqa: E402  (puts the repository on sys.path)

from vitcourse.training import recipes, runtime  # noqa: E402
from vitcourse.analysis.profile import CATEGORIES, profile_training  # noqa: E402
from vitcourse.analysis.profile import random_loader  # noqa: E402
from vitcourse.models import cnn  # noqa: E402


def fold_speedup(name: str, device, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = cnn.build(name).to(device)
    with torch.no_grad():  # move the running statistics off their initial 0 / 1
        for _ in range(2):
            model(torch.randn(batch, 3, 32, 32, device=device))
    model.eval()
    folded = model.fold_batch_norms()
    x = torch.randn(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        err = (folded(x) - model(x)).abs().max().item()
        for m in (model, folded):
            m(x)  # warm-up
        plain, fast = [], []
        for _ in range(repeats):  # alternate, so load changes hit both alike
            plain.append(timed(lambda: model(x), device))
            fast.append(timed(lambda: folded(x), device))
    p, f = statistics.median(plain), statistics.median(fast)
    return dict(model=name, batch=batch, unfolded_ms=1e3 * p, folded_ms=1e3 * f, speedup=p / f, max_abs_diff=err)


def profile_row(name: str, device, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = cnn.build(name)
    report = profile_training(model, random_loader(batch * (steps + 2), batch, 32), device=device, active=steps)
    return dict(model=name, batch=batch, params=sum(p.numel() for p in model.parameters()),
                step_ms=report.step_time_ms, wall_step_ms=report.wall_step_time_ms,
                **{f"{c}_share": report.shares[c] for c in CATEGORIES}, gpu_utilization=report.gpu_utilization)


def bn_head_start(seeds: int) -> dict:
    import data_utils
    from vitcourse.training.train import train

    splits = data_utils.load_dataset("digits")
    out = {}
    for model in ("mish_cnn", "bn_cnn"):
        losses, accs = [], []
        for seed in range(seeds):
            model_cfg, cfg = recipes.default_recipe("digits", model)
            runtime.seed_everything(seed)
            net = recipes.build_model(model, model_cfg)
            history = train(net, splits, dataclasses.replace(cfg, epochs=2, seed=seed, progress=False,
                                                             device="cpu")).history
            losses.append(history[0]["train_loss"])
            accs.append(history[1]["val_acc"])
        out[model] = dict(epoch1_train_loss=statistics.mean(losses), epoch2_val_acc=statistics.mean(accs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    args = parser.parse_args()
    device = runtime.pick_device("auto")
    info = header("CNN: fold speed-up, step-time breakdown, BN head start", device)
    repeats, steps = (5, 2) if args.quick else (15, 3)
    batch = 128 if device.type == "cuda" else 32
    folds = [fold_speedup(n, device, batch, repeats) for n in ("bn_cnn", "deep_mish_cnn", "vgg16")]
    print("\n| model | batch | eval ms unfolded | eval ms folded | speed-up | max |diff| |\n|---|---:|---:|---:|---:|---:|")
    for r in folds:
        print(f"| {r['model']} | {r['batch']} | {r['unfolded_ms']:.1f} | {r['folded_ms']:.1f} | "
              f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    profiles = [profile_row(n, device, batch, steps) for n in ("mish_cnn", "bn_cnn", "vgg16")]
    print("\n| model | params | step ms | data | CPU exec | other | kernel | memcpy | memset |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    share = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    for r in profiles:
        print(f"| {r['model']} | {r['params']:,} | {r['step_ms']:.1f} | {share(r['data_loading_share'])} | "
              f"{share(r['cpu_execution_share'])} | {share(r['other_share'])} | {share(r['kernel_share'])} | "
              f"{share(r['memcpy_share'])} | {share(r['memset_share'])} |")
    bn = bn_head_start(2 if args.quick else 3)
    print("\nDigits, default recipes, mean over seeds:")
    for name, r in bn.items():
        print(f"  {name}: epoch-1 train loss {r['epoch1_train_loss']:.3f}, epoch-2 val acc {r['epoch2_val_acc']:.1%}")
    write_json(args.json, dict(hardware=info, fold=folds, profile=profiles, bn_head_start=bn))


if __name__ == "__main__":
    main()

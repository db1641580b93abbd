"""vitcourse demo: the main job on the embedded offline data."""
HELP = "Train the reference ViT on the embedded digits data (offline) and print its size and accuracy."

import time

import torch
import torch.nn.functional as F

from data_utils import load_digits
from vitcourse import impl
from vitcourse.complexity import count_parameters

# A ViT sized for 8x8 digits: 2x2 patches give a 4x4 grid of 16 tokens.
DIGITS_VIT = dict(image_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                  num_heads=4, mlp_ratio=2.0)


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=30, help="passes over the 1,437 training digits")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    torch.manual_seed(args.seed)
    data = load_digits(seed=args.seed)
    scale = lambda u8: u8.float() / 255.0  # noqa: E731
    model = impl.reference().ViT.ViT(**DIGITS_VIT)
    params = count_parameters(model.config)["total"]
    print(f"reference ViT on digits: {params:,} parameters, {model.config.num_tokens} tokens per image")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    x, y = scale(data["train_images"]), data["train_labels"]
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(scale(data["test_images"])).argmax(1) == data["test_labels"]).float().mean().item()
    print(f"test accuracy {acc:.1%} after {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    return 0

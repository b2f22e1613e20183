"""Where one training step's time goes: torch's profiler over bnbench's CNN, one thread.

    .venv/bin/python scripts/profile_step.py --norm batch --batch-size 64 --widths 16,32,64

Prints the step time and the ops that take it (self CPU time), for docs/performance.md: what a
lever could win is bounded by the share of the ops it replaces.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import profile

from bnbench.config.schema import ModelConfig
from bnbench.train.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as each sweep worker trains
    widths = [int(w) for w in args.widths.split(",")]
    model = build_model(ModelConfig(norm=args.norm, widths=widths), 1, 10, seed=0)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(20):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps
    print(f"norm {args.norm}, batch {args.batch_size}, widths {widths}: {per_step * 1e3:.2f} ms")
    with profile() as prof:
        for _ in range(args.steps // 2):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()

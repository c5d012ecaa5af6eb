#!/usr/bin/env python3
"""The book's dropout MLP in PyTorch, for parity and speed comparisons.

Same experiment as `drop-exp run`: MLP 784-256-256-10 with ReLU, dropout p1
after the first hidden layer and p2 after the second, weights N(0, 0.01)
(biases keep PyTorch's default init), SGD with lr 0.5, batch 256, mean
cross-entropy, on the Fashion-MNIST IDX files drop-exp reads. The data are
preloaded as tensors and batches drawn from a seeded permutation (the book
uses a DataLoader; preloading measures the training itself, not the loader).

Prints one CSV row per epoch on stdout:
    epoch,train_loss,train_acc,test_loss,test_acc,train_seconds

With --wd-step-check it trains nothing and reads no data: it takes one SGD
step with weight decay on a fixed, formula-defined model and batch (the
case `train::tests::a_weight_decay_step_matches_pytorch` builds) and prints
the loss and some parameters after the step, the values that test pins.
Weight decay applies to the weights only, as in drop-exp.
"""

import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(directory, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(path, "rb") as f:
                data = f.read()
            magic, n = struct.unpack(">II", data[:8])
            if magic == 2051:
                return np.frombuffer(data, np.uint8, offset=16).reshape(n, 784)
            if magic == 2049:
                return np.frombuffer(data, np.uint8, offset=8)
            sys.exit(f"{path}: bad magic number {magic}")
    sys.exit(f"{name}(.gz) not found in {directory}; pass --data-dir")


def wd_step_check():
    """One SGD step with weight decay on formula-defined weights and inputs."""
    torch.set_default_dtype(torch.float32)
    widths = [784, 256, 256, 10]
    n = 8
    x = torch.tensor([[((i * 31 + k * 17) % 97) / 97.0 for k in range(784)] for i in range(n)])
    y = torch.tensor([(3 * i + 1) % 10 for i in range(n)])
    for wd in (1e-2, 1e-3):
        layers = []
        for l in range(3):
            fan_in, fan_out = widths[l], widths[l + 1]
            lin = nn.Linear(fan_in, fan_out)
            i = torch.arange(fan_in, dtype=torch.float64)[:, None]
            j = torch.arange(fan_out, dtype=torch.float64)[None, :]
            w = 0.05 * torch.sin(0.37 * i + 0.11 * j + l)  # [in, out], as drop-exp stores it
            b = 0.01 * torch.cos(0.5 * torch.arange(fan_out, dtype=torch.float64) + l)
            with torch.no_grad():
                lin.weight.copy_(w.t().float())
                lin.bias.copy_(b.float())
            layers.append(lin)
        net = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
        weights = [m.weight for m in layers]
        biases = [m.bias for m in layers]
        opt = torch.optim.SGD(
            [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}],
            lr=0.5,
        )
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w1, w2, w3 = (m.weight.detach() for m in layers)
        print(f"wd={wd} loss={loss.item():.9g}")
        print(f"  W1[5,7]={w1[7, 5].item():.9g} W1[783,255]={w1[255, 783].item():.9g}")
        print(f"  W2[17,200]={w2[200, 17].item():.9g} W3[255,9]={w3[9, 255].item():.9g}")
        print(f"  b1[3]={biases[0][3].item():.9g} b3[9]={biases[2][9].item():.9g}")
        print(f"  sum|W1|={w1.double().abs().sum().item():.9g} sum|W3|={w3.double().abs().sum().item():.9g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--p1", type=float, default=0.2)
    ap.add_argument("--p2", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--wd-step-check", action="store_true",
                    help="print one weight-decay step on a fixed case and exit (see above)")
    args = ap.parse_args()
    if args.wd_step_check:
        wd_step_check()
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    d = {k: read_idx(args.data_dir, v) for k, v in FILES.items()}
    n = args.train_subset or len(d["train_y"])
    train_x = torch.tensor(d["train_x"][:n], dtype=torch.float32, device=dev) / 255.0
    train_y = torch.tensor(d["train_y"][:n], dtype=torch.long, device=dev)
    test_x = torch.tensor(d["test_x"], dtype=torch.float32, device=dev) / 255.0
    test_y = torch.tensor(d["test_y"], dtype=torch.long, device=dev)

    net = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Dropout(args.p1),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(args.p2),
        nn.Linear(256, 10),
    ).to(dev)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)

    print("epoch,train_loss,train_acc,test_loss,test_acc,train_seconds", flush=True)
    for epoch in range(1, args.epochs + 1):
        net.train()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            x, y = train_x[idx], train_y[idx]
            out = net(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            loss_sum += loss.detach().sum()
            correct += (out.argmax(1) == y).sum()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            out = net(test_x)
            test_loss = loss_fn(out, test_y).mean().item()
            test_acc = (out.argmax(1) == test_y).float().mean().item()
        print(f"{epoch},{loss_sum.item() / n},{correct.item() / n},{test_loss},{test_acc},{train_seconds}", flush=True)


if __name__ == "__main__":
    main()

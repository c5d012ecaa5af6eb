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
    args = ap.parse_args()

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

#!/usr/bin/env python3
"""The study's text CNN (Kim 2014, CNN-rand) on MR in PyTorch: the peer that tunefleet's CPU
and CUDA backends are timed against.

Same data pipeline and split as `cnn::data` (byte-level lines, Kim's clean_str, </s> padding,
Counter.most_common vocabulary, np.random.seed(10) permutation, last 1000 = dev), same model
(embedding -> 3 conv widths -> ReLU -> max over time -> dropout -> linear), same init (uniform
[-0.1, 0.1], zero biases), same optimizer (plain RMSProp, alpha 0.9, eps 1e-8, global-norm
clipping, lr halved after epochs 50 and 100), same batch order (fixed, last partial dropped).
The embedding gradient is dense here (PyTorch's default), as a PyTorch user would train it.

    python bench/pytorch_textcnn.py --device cpu --threads 2 --epochs 1 --json
"""

import argparse
import collections
import json
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD = "</s>"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_str(text):
    """Kim's clean_str, step by step (see agent/cnn/src/data/clean.rs)."""
    text = re.sub(r"[^A-Za-z0-9(),!?'`]", " ", text)
    for suffix in ("'s", "'ve", "n't", "'re", "'d", "'ll"):
        text = text.replace(suffix, " " + suffix)
    text = text.replace(",", " , ").replace("!", " ! ")
    text = text.replace("(", " \\( ").replace(")", " \\) ").replace("?", " \\? ")
    text = re.sub(r"\s{2,}", " ", text)
    return text.strip().lower()


def read_lines(path):
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.decode("latin-1") for line in lines]


def load_mr(data_dir):
    pos = read_lines(os.path.join(data_dir, "rt-polarity.pos"))
    neg = read_lines(os.path.join(data_dir, "rt-polarity.neg"))
    sentences = [clean_str(s.strip()).split(" ") for s in pos + neg]
    labels = np.array([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    seq_len = max(len(s) for s in sentences)
    padded = [s + [PAD] * (seq_len - len(s)) for s in sentences]
    counts = collections.Counter(word for s in padded for word in s)
    vocab = {word: i for i, (word, _) in enumerate(counts.most_common())}
    ids = np.array([[vocab[w] for w in s] for s in padded], dtype=np.int64)
    np.random.seed(10)
    perm = np.random.permutation(len(ids))
    train, dev = perm[:-1000], perm[-1000:]
    return ids[train], labels[train], ids[dev], labels[dev], len(vocab)


class TextCNN(nn.Module):
    def __init__(self, vocab, embed_dim, filter_sizes, maps, classes, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, maps, w) for w in filter_sizes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(maps * len(filter_sizes), classes)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.uniform_(param, -0.1, 0.1)

    def forward(self, ids):
        x = self.embedding(ids).transpose(1, 2)  # [batch, embed, time]
        pooled = [F.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--embed-dim", type=int, default=300)
    p.add_argument("--num-feature-maps", type=int, default=100)
    p.add_argument("--filter-sizes", default="3,4,5")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--learning-rate", type=float, default=0.0005)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=5.0)
    p.add_argument("--max-train", type=int, default=0, help="first N training sentences (0: all)")
    p.add_argument("--max-dev", type=int, default=0, help="first N dev sentences (0: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default=os.path.join(REPO, "data", "mr"))
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    return p.parse_args()


def evaluate(model, ids, labels, device, batch=250):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            x = torch.from_numpy(ids[start:start + batch]).to(device)
            y = torch.from_numpy(labels[start:start + batch]).to(device)
            correct += (model(x).argmax(dim=1) == y).sum().item()
    model.train()
    return correct / len(ids)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    x_train, y_train, x_dev, y_dev, vocab = load_mr(args.data_dir)
    if args.max_train:
        x_train, y_train = x_train[:args.max_train], y_train[:args.max_train]
    if args.max_dev:
        x_dev, y_dev = x_dev[:args.max_dev], y_dev[:args.max_dev]
    sizes = [int(s) for s in args.filter_sizes.split(",")]
    model = TextCNN(vocab, args.embed_dim, sizes, args.num_feature_maps, 2, args.dropout).to(device)
    opt = torch.optim.RMSprop(model.parameters(), lr=args.learning_rate, alpha=0.9, eps=1e-8)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50, 100], gamma=0.5)
    # Batches in a fixed order, uploaded once; the last partial batch is dropped.
    bs = args.batch_size
    batches = len(x_train) // bs
    xs = torch.from_numpy(x_train[:batches * bs]).to(device).view(batches, bs, -1)
    ys = torch.from_numpy(y_train[:batches * bs]).to(device).view(batches, bs)
    best, best_epoch, dev_acc, start = 0.0, 0, 0.0, time.perf_counter()
    epoch_times = []
    for epoch in range(1, args.epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for i in range(batches):
            logits = model(xs[i])
            loss = F.cross_entropy(logits, ys[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            opt.step()
            loss_sum += loss.detach() * bs
            correct += (logits.argmax(dim=1) == ys[i]).sum()
        sched.step()
        dev_acc = evaluate(model, x_dev, y_dev, device)
        sync(device)
        seconds = time.perf_counter() - t0
        epoch_times.append(seconds)
        if dev_acc > best:
            best, best_epoch = dev_acc, epoch
        n = batches * bs
        report = {"epoch": epoch, "train_loss": loss_sum.item() / n,
                  "train_accuracy": correct.item() / n, "dev_accuracy": dev_acc,
                  "epoch_seconds": seconds}
        print(json.dumps(report) if args.json else
              "epoch {epoch:>3}: train loss {train_loss:.4f} accuracy {train_accuracy:.4f} | "
              "dev accuracy {dev_accuracy:.4f} | {epoch_seconds:.2f} s".format(**report))
        sys.stdout.flush()
    summary = {"summary": {"final_dev_accuracy": dev_acc, "best_dev_accuracy": best,
                           "best_epoch": best_epoch, "epochs_run": args.epochs,
                           "wall_seconds": time.perf_counter() - start,
                           "mean_epoch_seconds": sum(epoch_times) / max(1, len(epoch_times))},
               "backend": "pytorch {} {} ({} threads)".format(torch.__version__, args.device,
                                                              torch.get_num_threads()),
               "train_sentences": int(len(x_train)), "dev_sentences": int(len(x_dev))}
    print(json.dumps(summary) if args.json else summary)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes test/golden/golden.txt: the numbers test/test_golden.cpp holds mptrain to.

An independent implementation of the model in test/golden/golden.deck -- GPT-2 written here from
the math of doc/DESIGN.md §2 with PyTorch, not from mptrain's code -- run once in float64
(the reference that is committed) and once in float32 (to record how far float32 arithmetic is
from exact, which is what the test's tolerance must allow). Only the initial weights come from
mptrain: its layout-independent step-0 weights, read from a step-0 checkpoint that this script
has mptrain write, and fingerprinted (FNV-1a of the float32 bits) so the test can check that
today's mptrain starts from bit-identical weights.

Needs, at generation time only: /usr/bin/python3 with python3-torch, python3-numpy and
python3-h5py, and a built mptrain. The test itself needs none of them.

    /usr/bin/python3 test/golden/make_golden.py --mptrain src/mptrain   # from the build tree

What is computed (G sequences of T tokens per step, the model of the deck):
  * tokens: a fixed byte string mapped to ids (byte % vocab), 200 of them, so the sequential
    sampler (doc/DESIGN.md §4) wraps after 6 batches of the 10 steps;
  * the logits of every token of the first batch, and its mean cross-entropy;
  * for the first batch, each parameter tensor's gradient norm and the dot product of its
    gradient with a fixed direction d_i = sin(i + 1) over the row-major elements (catches
    permuted or transposed gradients, which keep the norm);
  * 10 AdamW steps: the loss, learning rate and global gradient norm (before clipping) of each.

Semantics, where PyTorch's stock pieces are used and where they are not:
  * AdamW: torch.optim.AdamW (bias correction; decoupled decay p -= lr * wd * p from the
    pre-update p, which is what mptrain's p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p) is).
    Weight decay on the four linear weight matrices of each block only (README: "on matrices
    only", embeddings not decayed; [optim] decay_all = false).
  * Clipping: NOT torch.nn.utils.clip_grad_norm_, which scales by max_norm / (norm + 1e-6);
    mptrain documents scaling by grad_clip / norm when norm > grad_clip, done here by hand.
    The norm counts the tied embedding once.
  * Schedule: written here from README/optimizer.hpp: step s (0-based) < warmup:
    lr * (s + 1) / warmup; then cosine from lr to min_lr over steps - warmup steps.
  * Loss: torch.nn.functional.cross_entropy, mean over all G*T tokens of the global batch.
"""
import argparse
import configparser
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = (b"It is a truth universally acknowledged, that a single model in possession of "
        b"good data must be in want of a gradient. 0123456789 The quick brown fox jumps over "
        b"the lazy dog; pack my box with five dozen liquor jugs! ")
N_TOKENS = 200


def read_deck(path):
    deck = configparser.ConfigParser(inline_comment_prefixes=("#",))
    deck.read(path)
    m, t, o = deck["model"], deck["train"], deck["optim"]
    return dict(n_layer=m.getint("n_layer"), n_head=m.getint("n_head"), C=m.getint("n_embd"),
                T=m.getint("seq_len"), V=m.getint("vocab_size"), G=t.getint("global_batch"),
                steps=t.getint("steps"), lr=o.getfloat("lr"), min_lr=o.getfloat("min_lr"),
                warmup=o.getint("warmup_steps"), schedule=o.get("schedule"),
                beta1=o.getfloat("beta1"), beta2=o.getfloat("beta2"), eps=o.getfloat("eps"),
                wd=o.getfloat("weight_decay"), clip=o.getfloat("grad_clip"))


def make_tokens(vocab):
    data = (TEXT * (N_TOKENS // len(TEXT) + 1))[:N_TOKENS]
    return [b % vocab for b in data]


def fnv1a64(array):
    h = 0xcbf29ce484222325
    for byte in np.ascontiguousarray(array, dtype="<f4").tobytes():
        h = ((h ^ byte) * 0x100000001b3) & 0xffffffffffffffff
    return h


def initial_weights(mptrain, deck_path, tokens, vocab):
    """mptrain's step-0 weights: runs mptrain for 0 steps with save_initial."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "tokens.h5")
        with h5py.File(data, "w") as f:
            d = f.create_dataset("tokens", data=np.array(tokens, dtype=np.uint16))
            d.attrs["vocab_size"] = np.int64(vocab)
        subprocess.run([mptrain, deck_path, "--train.steps=0", "--checkpoint.save_initial=true",
                        "--checkpoint.dir=" + os.path.join(tmp, "ck"), "--data.train=" + data],
                       check=True, stdout=subprocess.DEVNULL, cwd=tmp)
        with h5py.File(os.path.join(tmp, "ck", "step_00000000.h5"), "r") as f:
            return {name: np.array(f["model"][name], dtype=np.float32) for name in f["model"]}


class Gpt2:
    """GPT-2 from the math: pre-LN blocks, LN eps 1e-5, causal attention scaled by
    1/sqrt(head_dim), tanh-GELU, 4C MLP, final LN, LM head tied to wte, no dropout."""

    def __init__(self, cfg, weights, dtype):
        self.cfg = cfg
        self.p = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in weights.items()}

    @staticmethod
    def layernorm(x, w, b):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * w + b

    @staticmethod
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def logits(self, idx):
        c, p = self.cfg, self.p
        B, T, C, nh = idx.shape[0], idx.shape[1], c["C"], c["n_head"]
        hs = C // nh
        x = p["wte"][idx] + p["wpe"][:T]
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(c["n_layer"]):
            h = lambda name: p["h.%d.%s" % (l, name)]
            a = self.layernorm(x, h("ln_1.weight"), h("ln_1.bias"))
            qkv = a @ h("attn.c_attn.weight").T + h("attn.c_attn.bias")      # (B,T,3C): q|k|v
            q, k, v = (t.reshape(B, T, nh, hs).transpose(1, 2) for t in qkv.split(C, dim=-1))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)                    # (B,nh,T,T)
            att = torch.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ h("attn.c_proj.weight").T + h("attn.c_proj.bias")
            m = self.layernorm(x, h("ln_2.weight"), h("ln_2.bias"))
            m = self.gelu(m @ h("mlp.c_fc.weight").T + h("mlp.c_fc.bias"))
            x = x + m @ h("mlp.c_proj.weight").T + h("mlp.c_proj.bias")
        x = self.layernorm(x, p["ln_f.weight"], p["ln_f.bias"])
        return x @ p["wte"].T                                                  # (B,T,V)

    def loss(self, idx, targets):
        logits = self.logits(idx)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 targets.reshape(-1)), logits


def batches(tokens, G, T, steps):
    """doc/DESIGN.md §4's sequential sampler: spans [p, p + G*T + 1), wrapping."""
    p, n = 0, len(tokens)
    for _ in range(steps):
        span = torch.tensor(tokens[p:p + G * T + 1])
        yield span[:-1].reshape(G, T), span[1:].reshape(G, T)
        p += G * T
        if p + G * T + 1 > n:
            p = 0


def learning_rate(c, step):
    if step < c["warmup"]:
        return c["lr"] * (step + 1) / c["warmup"]
    assert c["schedule"] == "cosine"
    progress = min(max((step - c["warmup"]) / max(1, c["steps"] - c["warmup"]), 0.0), 1.0)
    return c["min_lr"] + 0.5 * (c["lr"] - c["min_lr"]) * (1.0 + math.cos(math.pi * progress))


def decayed(name):
    return name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))


def run(cfg, weights, tokens, dtype):
    model = Gpt2(cfg, weights, dtype)
    names = sorted(model.p)
    out = {}
    x0, y0 = next(batches(tokens, cfg["G"], cfg["T"], 1))
    loss, logits = model.loss(x0, y0)
    loss.backward()
    out["loss0"] = loss.item()
    out["logits"] = logits.detach().to(torch.float64).numpy()
    out["grad_norm"], out["grad_dot"] = {}, {}
    for n in names:
        g = model.p[n].grad.detach().to(torch.float64).reshape(-1)
        d = torch.sin(torch.arange(1, g.numel() + 1, dtype=torch.float64))
        out["grad_norm"][n] = g.norm().item()
        out["grad_dot"][n] = (g @ d).item()
        model.p[n].grad = None

    groups = [{"params": [model.p[n] for n in names if decayed(n)], "weight_decay": cfg["wd"]},
              {"params": [model.p[n] for n in names if not decayed(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
                            eps=cfg["eps"])
    out["steps"] = []
    for step, (x, y) in enumerate(batches(tokens, cfg["G"], cfg["T"], cfg["steps"])):
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(x, y)
        loss.backward()
        norm = math.sqrt(sum(float((model.p[n].grad.to(torch.float64) ** 2).sum())
                             for n in names))
        if cfg["clip"] > 0 and norm > cfg["clip"]:
            for n in names:
                model.p[n].grad.mul_(cfg["clip"] / norm)
        lr = learning_rate(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        out["steps"].append((step + 1, loss.item(), lr, norm))
    return out


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def deviations(f32, f64):
    """How far float32 arithmetic lands from float64, per kind of number."""
    lg = np.abs(f32["logits"] - f64["logits"]).max() / np.abs(f64["logits"]).max()
    gn = max(rel(f32["grad_norm"][n], f64["grad_norm"][n]) for n in f64["grad_norm"])
    gd = max(abs(f32["grad_dot"][n] - f64["grad_dot"][n]) /
             (f64["grad_norm"][n] * math.sqrt(len(f64["grad_norm"])) + 1e-300)
             for n in f64["grad_dot"])
    ls = max(rel(a[1], b[1]) for a, b in zip(f32["steps"], f64["steps"]))
    nm = max(rel(a[3], b[3]) for a, b in zip(f32["steps"], f64["steps"]))
    return lg, gn, ls, nm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mptrain", default="src/mptrain", help="the mptrain program to take the "
                    "step-0 weights from (default: src/mptrain)")
    ap.add_argument("--deck", default=os.path.join(HERE, "golden.deck"))
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "golden.txt"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cfg = read_deck(args.deck)
    tokens = make_tokens(cfg["V"])
    weights = initial_weights(os.path.abspath(args.mptrain), os.path.abspath(args.deck), tokens,
                              cfg["V"])
    f64 = run(cfg, weights, tokens, torch.float64)
    f32 = run(cfg, weights, tokens, torch.float32)
    lg, gn, ls, nm = deviations(f32, f64)

    w = []
    w.append("# Golden numbers for test/test_golden.cpp, written by test/golden/make_golden.py "
             "(PyTorch %s, float64)." % torch.__version__)
    w.append("# The model, optimizer and schedule are those of test/golden/golden.deck; the "
             "initial weights are mptrain's")
    w.append("# step-0 weights (fingerprints below). Regenerate: see test/golden/README.")
    w.append("# The same computation in float32 (PyTorch) lands this far from these numbers:")
    w.append("#   logits (max abs / max |logit|) %.2e, gradient norms (rel) %.2e, 10-step "
             "losses (rel) %.2e, step norms (rel) %.2e" % (lg, gn, ls, nm))
    w.append("tokens %d %s" % (len(tokens), " ".join(str(t) for t in tokens)))
    for n in sorted(weights):  # name, global shape (rows, cols; 1-D: cols = 1), fingerprint
        shape = weights[n].shape + (1,) * (2 - weights[n].ndim)
        w.append("tensor %s %d %d %016x" % (n, shape[0], shape[1], fnv1a64(weights[n])))
    G, T = f64["logits"].shape[:2]
    for b in range(G):
        for t in range(T):
            w.append("logits %d %d %s" % (b, t, " ".join("%.17g" % v for v in f64["logits"][b, t])))
    w.append("loss0 %.17g" % f64["loss0"])
    for n in sorted(f64["grad_norm"]):
        w.append("grad_norm %s %.17g" % (n, f64["grad_norm"][n]))
    for n in sorted(f64["grad_dot"]):
        w.append("grad_dot %s %.17g" % (n, f64["grad_dot"][n]))
    for step, loss, lr, norm in f64["steps"]:
        w.append("step %d %.17g %.17g %.17g" % (step, loss, lr, norm))
    with open(args.output, "w") as f:
        f.write("\n".join(w) + "\n")
    print("wrote %s; float32 vs float64: logits %.2e, grad norms %.2e, losses %.2e, norms %.2e"
          % (args.output, lg, gn, ls, nm))
    for (s, l64, lr, n64), (_, l32, _, n32) in zip(f64["steps"], f32["steps"]):
        print("  step %2d loss %.9f (f32 %.9f) lr %.6g norm %.6f (f32 %.6f)" %
              (s, l64, l32, lr, n64, n32))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# test/weights/make_fixtures.py -- the small GPT-2 weight files and golden numbers the weight
# tests (test/test_gpt2_weights.cpp, test/weights.sh) compare mptrain against. Run once with
# Debian's python3 and python3-torch; its outputs are committed next to it:
#
#   hf-tiny/          a Hugging Face GPT-2 directory as save_pretrained writes one today:
#                     config.json, model.safetensors with "transformer."-prefixed keys, Conv1D
#                     weights [in, out], no lm_head (tied), __metadata__ {"format": "pt"}
#   hf-tiny-legacy/   the same weights the way the original gpt2 repository stores them: keys
#                     without the prefix, the attn.bias / attn.masked_bias buffers, an explicit
#                     lm_head.weight equal to wte, keys in alphabetical order, a config.json
#                     with the extra keys of the original
#   gpt2-tiny.bin     the same weights as an llm.c model file (version 3, fp32, vocabulary
#                     padded to a multiple of 128 with zero rows)
#   golden.json       a plain-PyTorch GPT-2 forward pass (written here from the math, with
#                     Hugging Face's conventions: Conv1D x @ W + b, GELU tanh, LayerNorm eps
#                     1e-5, head tied to wte), in float64 from the float32 weights, on the
#                     bytes of golden-text.txt: mean losses and logits
#
# The files are written by the format specifications with json and struct only (neither
# transformers nor the safetensors package is used), so they are an independent check of
# mptrain's readers and writers.
#
#   /usr/bin/python3 test/weights/make_fixtures.py test/weights
import json
import math
import os
import struct
import sys

import torch

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS, VOCAB = 2, 4, 16, 64, 300
LLMC_MAGIC, LLMC_VERSION_FP32 = 20240326, 3


def make_weights():
    """Our tensors (nn.Linear [out, in] orientation), float32, by name, in model order."""
    g = torch.Generator().manual_seed(20240326)
    C = N_EMBD

    def normal(*shape, std):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).float()

    w = {"wte": normal(VOCAB, C, std=0.5), "wpe": normal(N_POSITIONS, C, std=0.3)}
    for i in range(N_LAYER):
        h = f"h.{i}."
        w[h + "ln_1.weight"] = 1 + normal(C, std=0.2)
        w[h + "ln_1.bias"] = normal(C, std=0.1)
        w[h + "attn.c_attn.weight"] = normal(3 * C, C, std=0.3)
        w[h + "attn.c_attn.bias"] = normal(3 * C, std=0.1)
        w[h + "attn.c_proj.weight"] = normal(C, C, std=0.3)
        w[h + "attn.c_proj.bias"] = normal(C, std=0.1)
        w[h + "ln_2.weight"] = 1 + normal(C, std=0.2)
        w[h + "ln_2.bias"] = normal(C, std=0.1)
        w[h + "mlp.c_fc.weight"] = normal(4 * C, C, std=0.3)
        w[h + "mlp.c_fc.bias"] = normal(4 * C, std=0.1)
        w[h + "mlp.c_proj.weight"] = normal(C, 4 * C, std=0.2)
        w[h + "mlp.c_proj.bias"] = normal(C, std=0.1)
    w["ln_f.weight"] = 1 + normal(C, std=0.2)
    w["ln_f.bias"] = normal(C, std=0.1)
    return w


CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def hf_state_dict(w):
    """Hugging Face's names (without the prefix) and layout: Conv1D weights are [in, out]."""
    sd = {}
    for name, t in w.items():
        key = name + ".weight" if name in ("wte", "wpe") else name
        sd[key] = t.t().contiguous() if name.endswith(CONV1D) else t
    return sd


def write_safetensors(path, tensors, metadata):
    """The format by its specification: u64 little-endian header length, JSON header, data."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        blob = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def base_config():
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0, "bos_token_id": None, "embd_pdrop": 0.0, "eos_token_id": None,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_ctx": N_POSITIONS, "n_embd": N_EMBD, "n_head": N_HEAD, "n_inner": None,
        "n_layer": N_LAYER, "n_positions": N_POSITIONS, "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "tie_word_embeddings": True, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": VOCAB}


def write_hf(out, w):
    d = os.path.join(out, "hf-tiny")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(base_config(), f, indent=2, sort_keys=True)
        f.write("\n")
    sd = hf_state_dict(w)
    write_safetensors(os.path.join(d, "model.safetensors"),
                      [("transformer." + k, v) for k, v in sd.items()], {"format": "pt"})


def write_hf_legacy(out, w):
    d = os.path.join(out, "hf-tiny-legacy")
    os.makedirs(d, exist_ok=True)
    config = base_config()
    del config["n_inner"], config["torch_dtype"], config["bos_token_id"], config["eos_token_id"]
    config.update({"summary_activation": None, "summary_first_dropout": 0.1,
                   "summary_proj_to_labels": True, "summary_type": "cls_index",
                   "summary_use_proj": True,
                   "task_specific_params": {"text-generation": {"do_sample": True,
                                                                "max_length": 50}}})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    sd = hf_state_dict(w)
    mask = torch.tril(torch.ones(N_POSITIONS, N_POSITIONS)).view(1, 1, N_POSITIONS, N_POSITIONS)
    for i in range(N_LAYER):
        sd[f"h.{i}.attn.bias"] = mask
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    sd["lm_head.weight"] = w["wte"]
    write_safetensors(os.path.join(d, "model.safetensors"), sorted(sd.items()), {"format": "pt"})


def write_llmc(out, w):
    padded = (VOCAB + 127) // 128 * 128
    header = [0] * 256
    header[:8] = [LLMC_MAGIC, LLMC_VERSION_FP32, N_POSITIONS, VOCAB, N_LAYER, N_HEAD, N_EMBD,
                  padded]
    wte = torch.zeros(padded, N_EMBD)
    wte[:VOCAB] = w["wte"]
    order = [wte, w["wpe"]]
    for kind in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                 "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                 "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
        order.append(torch.stack([w[f"h.{i}.{kind}"] for i in range(N_LAYER)]))
    order += [w["ln_f.weight"], w["ln_f.bias"]]
    with open(os.path.join(out, "gpt2-tiny.bin"), "wb") as f:
        f.write(struct.pack("<256i", *header))
        for t in order:
            f.write(t.contiguous().numpy().astype("<f4").tobytes())


def forward(sd, tokens):
    """GPT-2 on (B, T) tokens, float64, from Hugging Face's state dict: (B, T, V) logits."""
    sd = {k: v.double() for k, v in sd.items()}
    B, T = tokens.shape
    C, H = N_EMBD, N_HEAD
    hd = C // H

    def layer_norm(x, weight, bias):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    x = sd["wte.weight"][tokens] + sd["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(N_LAYER):
        p = f"h.{i}."
        a = layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        qkv = a @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]  # Conv1D
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in qkv.split(C, dim=-1))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~causal, float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        m = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        m = gelu_tanh(m @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"])
        x = x + m @ sd[p + "mlp.c_proj.weight"] + sd[p + "mlp.c_proj.bias"]
    x = layer_norm(x, sd["ln_f.weight"], sd["ln_f.bias"])
    return x @ sd["wte.weight"].t()


def golden_case(sd, data, rows, seq_len):
    """The first global batch of the sequential sampler (doc/DESIGN.md §4): row i reads
    data[i*T : i*T + T], targets shifted by one."""
    n = rows * seq_len
    inputs = torch.tensor(data[:n]).view(rows, seq_len)
    targets = torch.tensor(data[1:n + 1]).view(rows, seq_len)
    logits = forward(sd, inputs)
    loss = torch.nn.functional.cross_entropy(logits.view(n, VOCAB), targets.reshape(n))
    case = {"rows": rows, "seq_len": seq_len, "loss": loss.item()}
    # Row 0's logits: every position of a short row, the last position of a long one.
    row0 = logits[0] if seq_len <= 16 else logits[0, -1:]
    case["row0_positions"] = list(range(seq_len - row0.shape[0], seq_len))
    case["row0_logits"] = [float("%.10g" % v) for v in row0.flatten().tolist()]
    return case


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    w = make_weights()
    write_hf(out, w)
    write_hf_legacy(out, w)
    write_llmc(out, w)
    with open(os.path.join(out, "golden-text.txt"), "rb") as f:
        data = list(f.read())
    sd = hf_state_dict(w)
    golden = {
        "comment": "written by make_fixtures.py: a float64 PyTorch GPT-2 forward on the bytes "
                   "of golden-text.txt with the weights of hf-tiny; loss = mean cross-entropy "
                   "of the first global batch; row0_logits = logits of row 0 at row0_positions, "
                   "(positions, vocab) row-major",
        "config": {"n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD,
                   "n_positions": N_POSITIONS, "vocab_size": VOCAB},
        "cases": [golden_case(sd, data, 4, 16), golden_case(sd, data, 2, 64)]}
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    for case in golden["cases"]:
        print(f"rows {case['rows']} seq_len {case['seq_len']}: loss {case['loss']!r}")


if __name__ == "__main__":
    main()

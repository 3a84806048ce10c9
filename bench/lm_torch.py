#!/usr/bin/env python3
"""PyTorch CPU peer for the language-model forward benchmark (bench/lm.bench.ts, issue 17 item 1).

The same stories260K checkpoint (llama2.c .bin), the same token batches (written by lm.bench.ts as
JSON), the same two passes:
  early_exit_l3 : embeddings and blocks 0..2 -> hidden_states[3] (the activations the study trains on)
  full          : all blocks, final RMSNorm, logits
Model (llama2.c's model.py, written out here so nothing but torch and numpy is needed):
  h = x + Wo attn(RoPE(Wq rms(x)), RoPE(Wk rms(x)), Wv rms(x))   (causal, grouped-query: kv heads repeated)
  x' = h + W2 (silu(W1 rms(h)) * W3 rms(h))                      rms(x) = x / sqrt(mean(x^2) + 1e-5) * g
Run: /usr/bin/python3 bench/lm_torch.py --model M.bin --tokens batches.json [--threads 1,2] [--reps 8]
     [--dump-logits out.f32]   (batch 0's logits [B, T, vocab] as raw float32, for a correctness check)
Prints one JSON line per (pass, threads). Each thread count runs in a fresh process with every
thread-pool variable fixed before torch loads, on Debian's OpenMP OpenBLAS when installed (as
../shared/bench/bench_torch.py does: the pthread build is slower with 2 threads).
Requires Debian's python3-torch and python3-numpy (not a test dependency).
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time

OPENMP_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def read_llama2c(path):
    """llama2.c v0 checkpoint: 7 int32 header, then float32 tensors in a fixed order."""
    import numpy as np

    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype=np.float32)
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = n_kv * head
    off = 0

    def take(*shape):
        nonlocal off
        n = 1
        for s in shape:
            n *= s
        if off + n > data.size:
            raise ValueError(f"{path}: file ends at {data.size} floats, tensor needs {off + n}")
        t = data[off : off + n].reshape(shape)
        off += n
        return t

    w = {
        "tok": take(vocab, dim),
        "rms_att": take(n_layers, dim),
        "wq": take(n_layers, dim, dim),
        "wk": take(n_layers, kv_dim, dim),
        "wv": take(n_layers, kv_dim, dim),
        "wo": take(n_layers, dim, dim),
        "rms_ffn": take(n_layers, dim),
        "w1": take(n_layers, hidden, dim),
        "w2": take(n_layers, dim, hidden),
        "w3": take(n_layers, hidden, dim),
        "rms_final": take(dim),
    }
    take(seq_len, head // 2)  # freq_cis_real (recomputed below)
    take(seq_len, head // 2)  # freq_cis_imag
    w["cls"] = w["tok"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, seq_len=seq_len)
    return cfg, w


def run_child(args):
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    cfg, raw = read_llama2c(args.model)
    W = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
    with open(args.tokens) as f:
        batches = [torch.tensor(b, dtype=torch.long) for b in json.load(f)]
    dim, n_heads, n_kv = cfg["dim"], cfg["n_heads"], cfg["n_kv"]
    hd = dim // n_heads
    T = batches[0].shape[1]
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)  # [T, hd/2]
    cos, sin = torch.cos(ang), torch.sin(ang)
    mask = torch.full((T, T), float("-inf")).triu(1)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g

    def rope(x):  # x [B, T, H, hd]: pairs (0,1), (2,3), ... rotated as complex numbers
        xr, xi = x[..., 0::2], x[..., 1::2]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.stack((xr * c - xi * s, xr * s + xi * c), dim=-1).flatten(-2)

    def forward(ids, layers, logits):
        B = ids.shape[0]
        x = W["tok"][ids]  # [B, T, dim]
        for l in range(layers):
            a = rms(x, W["rms_att"][l])
            q = rope((a @ W["wq"][l].T).view(B, T, n_heads, hd))
            k = rope((a @ W["wk"][l].T).view(B, T, n_kv, hd))
            v = (a @ W["wv"][l].T).view(B, T, n_kv, hd)
            rep = n_heads // n_kv
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, hd]
            att = torch.softmax((q @ k.transpose(-1, -2)) / hd**0.5 + mask, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(B, T, dim)
            x = x + o @ W["wo"][l].T
            f = rms(x, W["rms_ffn"][l])
            x = x + (torch.nn.functional.silu(f @ W["w1"][l].T) * (f @ W["w3"][l].T)) @ W["w2"][l].T
        if not logits:
            return x
        return rms(x, W["rms_final"]) @ W["cls"].T

    passes = {"early_exit_l3": (3, False), "full": (cfg["n_layers"], True)}
    with torch.inference_mode():
        if args.dump_logits:
            forward(batches[0], cfg["n_layers"], True).numpy().astype("float32").tofile(args.dump_logits)
        for name, (layers, logits) in passes.items():
            forward(batches[0], layers, logits)  # warm-up
            times = []
            cpu = []
            for _ in range(args.reps):
                t0, c0 = time.perf_counter(), time.process_time()
                for ids in batches:
                    forward(ids, layers, logits)
                times.append((time.perf_counter() - t0) / len(batches))
                cpu.append((time.process_time() - c0) / len(batches))
            ms = statistics.median(times) * 1000
            B = batches[0].shape[0]
            print(
                json.dumps(
                    {
                        "name": f"lm.forward.{name}",
                        "impl": "torch",
                        "torch": torch.__version__,
                        "threads": int(os.environ["BENCH_THREADS"]),
                        "batch": B,
                        "seq": T,
                        "tokens_per_s": round(B * T / (ms / 1000)),
                        "ms_median": round(ms, 2),
                        "ms_min": round(min(times) * 1000, 2),
                        "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
                        "reps": args.reps,
                        "load_before": round(os.getloadavg()[0], 2),
                    }
                ),
                flush=True,
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="llama2.c .bin checkpoint")
    ap.add_argument("--tokens", required=True, help="JSON [[[id, ...] per window] per batch]")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--dump-logits", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    for t in args.threads.split(","):
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BENCH_THREADS"):
            env[name] = t
        if os.environ.get("BENCH_BLAS", "openmp") == "openmp" and os.path.isdir(OPENMP_BLAS_DIR):
            env["LD_LIBRARY_PATH"] = OPENMP_BLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        argv = [a for a in sys.argv[1:] if a != "--child"]
        if t != args.threads.split(",")[0]:  # dump once
            argv = [a for i, a in enumerate(argv) if a != "--dump-logits" and (i == 0 or argv[i - 1] != "--dump-logits")]
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child"] + argv, env=env, check=True)


if __name__ == "__main__":
    main()

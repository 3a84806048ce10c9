#!/usr/bin/env python3
"""Reads and writes our SAELens/sparsify exports and store exports with numpy alone (no code of
this repository, no safetensors package), for tests/interop-python.test.ts.

  encode-export DIR X.npy OURS_CODES.npy [OURS_XHAT.npy]
      encode X (raw rows) with the SAELens-layout SAE in DIR (and reconstruct through its NFM when
      nfm_cfg.json is there); print the largest differences from ours as JSON.
  write-foreign ROOT X.npy SEED
      write a SAELens-layout SAE (ROOT/saelens, W_enc bf16, W_dec f16) and a sparsify one
      (ROOT/sparsify/layers.2, bf16), and numpy's codes of X for each (ROOT/codes_*.npy).
  store EXPORT_DIR SHARD ROW
      memory-map one shard of a store export and the rows table; print hashes and row ROW's info.
Prints one JSON object on stdout.
"""
import hashlib
import json
import os
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I32": "<i4", "I64": "<i8", "F64": "<f8"}


def read_safetensors(path):
    """The format: u64 LE header length, JSON header, data. Returns {name: float32/int array}."""
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=DTYPES[t["dtype"]])
        if t["dtype"] == "BF16":  # bfloat16 = the upper half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.reshape(t["shape"]).astype(np.float32) if t["dtype"] != "I32" else arr.reshape(t["shape"])
    return out


def write_safetensors(path, tensors):
    """tensors: {name: (dtype name, uint16/float32 array)}; header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def to_bf16(x):
    """float32 → bfloat16 bits, round to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def topk_relu(pre, k):
    """Dense [n, F]: the k largest entries of each row, ReLU'd; zeros elsewhere."""
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    out = np.zeros_like(pre)
    np.put_along_axis(out, idx, np.maximum(np.take_along_axis(pre, idx, axis=1), 0), axis=1)
    return out


def torch_codes(x, w_enc, b_enc, b_dec, apply_b_dec, k):
    try:
        import torch
    except ImportError:
        return None, "python3-torch is not installed: the PyTorch check is skipped"
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    pre = (t(x) - t(b_dec) * float(apply_b_dec)) @ t(w_enc) + t(b_enc)
    top = torch.topk(pre, k, dim=-1)
    out = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
    return out.numpy(), "torch " + torch.__version__


def encode_export(d, x_file, codes_file, xhat_file=None):
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    w = read_safetensors(os.path.join(d, "sae_weights.safetensors"))
    x = np.load(x_file).astype(np.float64)
    k = cfg["k"]
    apply = cfg.get("apply_b_dec_to_input", True)
    pre = (x - w["b_dec"] * apply) @ w["W_enc"] + w["b_enc"]
    f = topk_relu(pre, k)
    ours = np.load(codes_file)
    res = {"codes_max_abs_diff": float(np.abs(f - ours).max()), "nonzero": int((f != 0).sum()), "rows": int(x.shape[0])}
    tc, note = torch_codes(x, w["W_enc"], w["b_enc"], w["b_dec"], apply, k)
    res["torch"] = note
    if tc is not None:
        res["torch_codes_max_abs_diff"] = float(np.abs(tc - ours).max())
    xhat = f @ w["W_dec"] + w["b_dec"]
    nfm_cfg_file = os.path.join(d, "nfm_cfg.json")
    if os.path.exists(nfm_cfg_file):
        nc = json.load(open(nfm_cfg_file))
        n = read_safetensors(os.path.join(d, "nfm_weights.safetensors"))
        fs = f if nc["top_n"] is None else topk_relu(f, nc["top_n"])
        if nc["linear"]:
            xhat = xhat + fs @ n["W_lin"] + n["b_lin"]
        if nc["interaction"]:
            z = 0.5 * ((fs @ n["V"]) ** 2 - (fs ** 2) @ (n["V"] ** 2))
            xhat = xhat + np.maximum(z @ n["W_1"] + n["b_1"], 0) @ n["W_2"] + n["b_2"]
    if xhat_file:
        res["xhat_max_abs_diff"] = float(np.abs(xhat - np.load(xhat_file)).max())
    return res


def write_foreign(root, x_file, seed):
    rng = np.random.default_rng(seed)
    x = np.load(x_file).astype(np.float64)
    d, F, k = x.shape[1], 40, 6
    # SAELens: W_enc [d_in, d_sae] in bf16, W_dec [d_sae, d_in] in f16, biases f32
    w_enc = from_bf16(to_bf16(rng.normal(0, 0.4, (d, F))))
    w_dec = rng.normal(0, 0.4, (F, d)).astype(np.float16)
    b_enc = rng.normal(0, 0.2, F).astype(np.float32)
    b_dec = rng.normal(0, 1, d).astype(np.float32)
    sl = os.path.join(root, "saelens")
    write_safetensors(os.path.join(sl, "sae_weights.safetensors"), {
        "W_enc": ("BF16", to_bf16(w_enc)), "b_enc": ("F32", b_enc), "W_dec": ("F16", w_dec), "b_dec": ("F32", b_dec)})
    json.dump({"architecture": "topk", "d_in": d, "d_sae": F, "k": k, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": True, "normalize_activations": "none",
               "metadata": {"hook_name": "blocks.2.hook_resid_pre", "model_name": "numpy-test", "sae_lens_version": "6.5.0"}},
              open(os.path.join(sl, "cfg.json"), "w"))
    np.save(os.path.join(root, "codes_saelens.npy"), topk_relu((x - b_dec) @ w_enc.astype(np.float64) + b_enc, k).astype(np.float32))
    # sparsify: encoder.weight [num_latents, d_in], everything bf16; ReLU then TopK (same dense code)
    enc = from_bf16(to_bf16(rng.normal(0, 0.4, (F, d))))
    enc_b = from_bf16(to_bf16(rng.normal(0, 0.2, F)))
    dec = from_bf16(to_bf16(rng.normal(0, 0.4, (F, d))))
    bd = from_bf16(to_bf16(rng.normal(0, 1, d)))
    sp = os.path.join(root, "sparsify", "layers.2")
    write_safetensors(os.path.join(sp, "sae.safetensors"), {
        "encoder.weight": ("BF16", to_bf16(enc)), "encoder.bias": ("BF16", to_bf16(enc_b)),
        "W_dec": ("BF16", to_bf16(dec)), "b_dec": ("BF16", to_bf16(bd))})
    json.dump({"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": F, "k": k,
               "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": d},
              open(os.path.join(sp, "cfg.json"), "w"))
    np.save(os.path.join(root, "codes_sparsify.npy"), topk_relu(np.maximum((x - bd) @ enc.T.astype(np.float64) + enc_b, 0), k).astype(np.float32))
    return {"d": d, "F": F, "k": k}


def store(export_dir, shard, row):
    m = json.load(open(os.path.join(export_dir, "export.json")))
    s = m["shards"][shard]
    f = os.path.join(export_dir, s["file"])
    if m["fileFormat"] == "npy":
        x = np.load(f, mmap_mode="r")
    else:
        x = np.memmap(f, dtype=s["numpyDtype"], mode="r", offset=s["dataOffset"], shape=tuple(s["shape"]))
        # the offset in the manifest is the one the safetensors header gives
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            h = json.loads(fh.read(n))
        assert 8 + n + h["activations"]["data_offsets"][0] == s["dataOffset"], "dataOffset disagrees with the header"
    assert isinstance(x, np.memmap), "memory-mapped, not read"
    assert x.shape == tuple(s["shape"]) and x.dtype == np.dtype(s["numpyDtype"])
    r = m["rows"]
    rf = os.path.join(export_dir, r["file"])
    rows = np.load(rf, mmap_mode="r") if m["fileFormat"] == "npy" else np.memmap(rf, dtype="<i4", mode="r", offset=r["dataOffset"], shape=tuple(r["shape"]))
    ids = json.load(open(os.path.join(export_dir, m["documents"]["file"])))["ids"]
    info = [int(v) for v in rows[row]]
    return {
        "shape": list(x.shape),
        "dtype": str(x.dtype),
        "sha256_f32": hashlib.sha256(np.asarray(x, dtype="<f4").tobytes()).hexdigest(),
        "shard_rows_sha256": hashlib.sha256(np.ascontiguousarray(rows[s["rowStart"]:s["rowStart"] + s["rowCount"]]).tobytes()).hexdigest(),
        "row": info,
        "doc_id": ids[info[1]],
        "hook": m["hook"],
        "normalization_kind": m["normalization"]["kind"],
    }


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "encode-export":
        out = encode_export(*args)
    elif cmd == "write-foreign":
        out = write_foreign(args[0], args[1], int(args[2]))
    elif cmd == "store":
        out = store(args[0], int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))

#!/usr/bin/env python3
"""The PyTorch peer (../shared/bench/bench_torch.py) at the shapes our study trains, unchanged otherwise.

The peer knows S1-S4 only. This wrapper loads it as a module, adds
  Q  : d 64, F 1024, k 20, k_emb 32   (the quick and standard presets' SAE, NFM and joint models)
  QW : d 64, F 1812, k 20, k_emb 32   (the width-matched standalone SAE of those presets)
and runs its main() with the same arguments; the child processes it starts (one per thread count)
re-enter this file, so they know the added shapes too. Nothing of the peer's timing or models changes.
Run: /usr/bin/python3 bench/bench_torch_study.py --config Q --threads 1,2 --model sae,nfm,joint --variant sparse --json
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("IS_TORCH_PEER") or os.path.join(HERE, "..", "..", "shared", "bench", "bench_torch.py")

STUDY_SHAPES = {
    "Q": dict(d=64, F=1024, k=20, k_emb=32),
    "QW": dict(d=64, F=1812, k=20, k_emb=32),
}


def load_peer():
    if not os.path.exists(PEER):
        sys.exit(f"bench_torch_study: no peer script at {PEER} (set IS_TORCH_PEER)")
    spec = importlib.util.spec_from_file_location("bench_torch", PEER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.CONFIGS.update(STUDY_SHAPES)
    # the peer re-executes os.path.abspath(__file__) for each thread count: make that this wrapper
    mod.__file__ = os.path.abspath(__file__)
    return mod


if __name__ == "__main__":
    load_peer().main()

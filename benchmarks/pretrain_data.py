"""Generate the pre-training data of the shipped organic model (GFN2-xTB, see
``equipot.pretrained.recipe``).

    OMP_NUM_THREADS=1 flock /work/coord/cpu.lock python benchmarks/pretrain_data.py \
        --out benchmarks/out/pretrain/organic_gfn2.xyz
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tblite's OpenMP only hurts for small molecules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/pretrain/organic_gfn2.xyz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N molecules only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    from equipot.pretrained.recipe import generate

    start = time.perf_counter()
    path = generate(args.out, seed=args.seed, limit=args.limit)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

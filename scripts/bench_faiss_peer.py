#!/usr/bin/env python3
"""W4 retrieval peer: FAISS IndexFlatIP, numpy matmul + argpartition, and FAISS HNSW on the
data the Rust harness wrote (crates/docstore/benches/retrieval.rs --peer PYTHON).

Needs `pip install faiss-cpu numpy`. Reads DIR/base.f32, DIR/queries.f32 (little-endian f32,
row-major, --dim columns) and, if present, DIR/ours_ids.u32 (radit-docstore's exact top-k ids)
to report agreement. Thread counts are set before numpy/faiss load their BLAS.
"""
import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--ef", default="16,32,64,128,256")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-ann", action="store_true")
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)

    import numpy as np
    import faiss

    faiss.omp_set_num_threads(a.threads)
    base = np.fromfile(os.path.join(a.dir, "base.f32"), dtype="<f4").reshape(-1, a.dim)
    queries = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype="<f4").reshape(-1, a.dim)
    nq, k = len(queries), a.k
    print(f"peer: faiss {faiss.__version__}, numpy {np.__version__}, {a.threads} threads, "
          f"{len(base)} x {a.dim}, {nq} queries, top-{k}")

    flat = faiss.IndexFlatIP(a.dim)
    flat.add(base)
    flat.search(queries[:10], k)
    best = float("inf")
    for _ in range(a.reps):
        t = time.perf_counter()
        _, truth = flat.search(queries, k)
        best = min(best, time.perf_counter() - t)
    print(f"faiss IndexFlatIP: {nq / best:.0f} q/s ({best:.3f} s)")

    best = float("inf")
    for _ in range(a.reps):
        t = time.perf_counter()
        s = queries @ base.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.take_along_axis(s, part, axis=1).argsort(axis=1)[:, ::-1]
        np_ids = np.take_along_axis(part, order, axis=1)
        best = min(best, time.perf_counter() - t)
    print(f"numpy matmul + argpartition: {nq / best:.0f} q/s ({best:.3f} s)")

    ours_path = os.path.join(a.dir, "ours_ids.u32")
    if os.path.exists(ours_path):
        ours = np.fromfile(ours_path, dtype="<u4").reshape(nq, k).astype(np.int64)
        same = sum(len(set(o) & set(t)) for o, t in zip(ours, truth)) / (nq * k)
        exact_order = float(np.mean(np.all(ours == truth, axis=1)))
        print(f"agreement of radit-docstore exact top-{k} with faiss: {same:.5f} of ids, "
              f"{exact_order:.4f} of queries in identical order")

    if a.skip_ann:
        return
    hnsw = faiss.IndexHNSWFlat(a.dim, a.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = a.efc
    t = time.perf_counter()
    hnsw.add(base)
    print(f"faiss HNSW build (M={a.m}, efConstruction={a.efc}): {time.perf_counter() - t:.1f} s")
    for ef in [int(x) for x in a.ef.split(",")]:
        hnsw.hnsw.efSearch = ef
        best = float("inf")
        for _ in range(a.reps):
            t = time.perf_counter()
            _, ids = hnsw.search(queries, k)
            best = min(best, time.perf_counter() - t)
        rec = sum(len(set(i) & set(t)) for i, t in zip(ids, truth)) / (nq * k)
        print(f"faiss HNSW ef={ef}: {nq / best:.0f} q/s, recall@{k} {rec:.4f}")


if __name__ == "__main__":
    main()

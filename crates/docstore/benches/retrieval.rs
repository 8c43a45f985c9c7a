//! W4 retrieval benchmark (a harness, not a timed test).
//!
//! ```text
//! cargo bench -p radit-docstore --bench retrieval -- [--n 100000] [--dim 384] [--queries 1000]
//!     [--k 10] [--threads 2] [--m 16] [--efc 200] [--ef 16,32,64,128,256]
//!     [--embeddings INDEX_DIR_OR_RAW_F32] [--query-embeddings RAW_F32]
//!     [--peer PYTHON] [--peer-script scripts/bench_faiss_peer.py] [--skip-ann] [--reps 3]
//! ```
//!
//! Random data: `n` unit vectors (Gaussian, normalized) and `queries` more. With
//! `--embeddings`, the rows of an index's `embeddings.f32` (or a raw f32 file of `--dim`
//! columns); queries are `--query-embeddings`, or else `queries` rows held out of the base.
//! With `--peer`, the same data is handed to `scripts/bench_faiss_peer.py` (FAISS IndexFlatIP,
//! numpy matmul + argpartition, FAISS HNSW) under the same thread count, in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use radit_docstore::exact;
use radit_docstore::hnsw::Hnsw;
use radit_docstore::kernels::isa;
use radit_docstore::{exact_top_k, HnswParams, Scored};
use radit_util::rng::SplitMix64;

struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    k: usize,
    threads: usize,
    m: usize,
    efc: usize,
    efs: Vec<usize>,
    embeddings: Option<PathBuf>,
    query_embeddings: Option<PathBuf>,
    peer: Option<String>,
    peer_script: PathBuf,
    skip_ann: bool,
    reps: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        dim: 384,
        queries: 1000,
        k: 10,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        m: 16,
        efc: 200,
        efs: vec![16, 32, 64, 128, 256, 512],
        embeddings: None,
        query_embeddings: None,
        peer: None,
        peer_script: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/bench_faiss_peer.py"),
        skip_ann: false,
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|_| format!("bad number {s}"));
        match flag.as_str() {
            "--n" => a.n = num(val()?)?,
            "--dim" => a.dim = num(val()?)?,
            "--queries" => a.queries = num(val()?)?,
            "--k" => a.k = num(val()?)?,
            "--threads" => a.threads = num(val()?)?,
            "--m" => a.m = num(val()?)?,
            "--efc" => a.efc = num(val()?)?,
            "--reps" => a.reps = num(val()?)?.max(1),
            "--ef" => {
                a.efs = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad ef {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--embeddings" => a.embeddings = Some(val()?.into()),
            "--query-embeddings" => a.query_embeddings = Some(val()?.into()),
            "--peer" => a.peer = Some(val()?),
            "--peer-script" => a.peer_script = val()?.into(),
            "--skip-ann" => a.skip_ann = true,
            "--bench" => {} // passed by `cargo bench`
            "--help" | "-h" => {
                println!("see the doc comment of benches/retrieval.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn random_unit(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut v = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let start = v.len();
        for _ in 0..dim {
            let u1 = rng.next_f64_nonzero();
            let u2 = rng.next_f64();
            v.push(((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32);
        }
        let row = &mut v[start..];
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn read_f32(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{}: length is not a multiple of 4", path.display()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn write_f32(path: &Path, v: &[f32]) -> Result<(), String> {
    let mut b = Vec::with_capacity(v.len() * 4);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, b).map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads real embeddings: an index folder (manifest gives dim) or a raw f32 file.
fn load_real(a: &mut Args, path: &Path) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (file, dim) = if path.is_dir() {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(path.join("manifest.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let dim = m["counts"]["dim"]
            .as_u64()
            .ok_or("manifest without counts.dim")? as usize;
        (path.join("embeddings.f32"), dim)
    } else {
        (path.to_path_buf(), a.dim)
    };
    a.dim = dim;
    let all = read_f32(&file)?;
    let rows = all.len() / dim;
    if let Some(q) = &a.query_embeddings {
        let q = read_f32(q)?;
        a.queries = q.len() / dim;
        a.n = rows;
        return Ok((all, q));
    }
    // Hold out `queries` rows (a deterministic sample) as queries.
    let nq = a.queries.min(rows / 10);
    let mut rng = SplitMix64::new(7);
    let mut held = std::collections::BTreeSet::new();
    while held.len() < nq {
        held.insert((rng.next_u64() % rows as u64) as usize);
    }
    let mut base = Vec::with_capacity((rows - nq) * dim);
    let mut q = Vec::with_capacity(nq * dim);
    for (i, r) in all.chunks_exact(dim).enumerate() {
        if held.contains(&i) {
            q.extend_from_slice(r);
        } else {
            base.extend_from_slice(r);
        }
    }
    a.n = rows - nq;
    a.queries = nq;
    Ok((base, q))
}

fn recall(truth: &[Vec<Scored>], got: &[Vec<Scored>], k: usize) -> f64 {
    let mut hit = 0;
    let mut total = 0;
    for (t, g) in truth.iter().zip(got) {
        let t: Vec<u32> = t.iter().take(k).map(|s| s.id).collect();
        total += t.len();
        hit += g.iter().take(k).filter(|s| t.contains(&s.id)).count();
    }
    hit as f64 / total.max(1) as f64
}

fn run() -> Result<(), String> {
    let mut a = parse_args()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .map_err(|e| e.to_string())?;
    let (base, queries, label) = match a.embeddings.clone() {
        Some(p) => {
            let (b, q) = load_real(&mut a, &p)?;
            (b, q, format!("embeddings of {}", p.display()))
        }
        None => (
            random_unit(a.n, a.dim, 1),
            random_unit(a.queries, a.dim, 2),
            "random unit vectors".to_string(),
        ),
    };
    let (n, dim, nq, k) = (a.n, a.dim, a.queries, a.k);
    println!(
        "W4 retrieval: {label}, {n} x {dim}, {nq} queries, top-{k}, {} threads, kernel {}",
        a.threads,
        isa().name()
    );

    // Exact search: best of `reps` full runs.
    let mut truth = Vec::new();
    let mut best = f64::INFINITY;
    pool.install(|| -> Result<(), String> {
        let _ = exact_top_k(&base, dim, &queries[..dim.min(queries.len())], k);
        for _ in 0..a.reps {
            let t = Instant::now();
            truth = exact_top_k(&base, dim, &queries, k).map_err(|e| e.to_string())?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    let gflops = 2.0 * n as f64 * dim as f64 * nq as f64 / best / 1e9;
    println!(
        "exact (radit-docstore): {:.0} q/s ({:.3} s for {nq} queries, {gflops:.0} GFLOP/s)",
        nq as f64 / best,
        best
    );
    // The same over an f16 copy of the matrix (half the memory traffic, converted per block).
    let base16: Vec<half::f16> = base.iter().map(|&x| half::f16::from_f32(x)).collect();
    let mut best16 = f64::INFINITY;
    let mut got16 = Vec::new();
    pool.install(|| -> Result<(), String> {
        for _ in 0..a.reps {
            let t = Instant::now();
            got16 = exact::search(exact::Rows::F16(&base16), dim, &queries, k)
                .map_err(|e| e.to_string())?;
            best16 = best16.min(t.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    println!(
        "exact over f16 storage: {:.0} q/s, recall@{k} vs f32 {:.4}",
        nq as f64 / best16,
        recall(&truth, &got16, k)
    );
    drop(base16);
    // Single-query latency (batch of one).
    pool.install(|| {
        let reps = 20.min(nq);
        let t = Instant::now();
        for i in 0..reps {
            let _ = exact_top_k(&base, dim, &queries[i * dim..(i + 1) * dim], k);
        }
        println!(
            "exact, one query at a time: {:.1} ms per query",
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    });

    if !a.skip_ann {
        let params = HnswParams {
            m: a.m,
            ef_construction: a.efc,
            ..HnswParams::default()
        };
        let t = Instant::now();
        let h = pool
            .install(|| Hnsw::build(&base, dim, &params))
            .map_err(|e| e.to_string())?;
        println!(
            "hnsw build (m={}, ef_construction={}): {:.1} s",
            a.m,
            a.efc,
            t.elapsed().as_secs_f64()
        );
        for &ef in &a.efs {
            let mut best = f64::INFINITY;
            let mut got = Vec::new();
            pool.install(|| -> Result<(), String> {
                for _ in 0..a.reps {
                    let t = Instant::now();
                    got = h
                        .search(&base, &queries, k, ef)
                        .map_err(|e| e.to_string())?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                Ok(())
            })?;
            println!(
                "hnsw ef={ef}: {:.0} q/s, recall@{k} {:.4}",
                nq as f64 / best,
                recall(&truth, &got, k)
            );
        }
    }

    if let Some(py) = &a.peer {
        let dir = std::env::temp_dir().join(format!("radit-w4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        write_f32(&dir.join("base.f32"), &base)?;
        write_f32(&dir.join("queries.f32"), &queries)?;
        let mut ids = Vec::with_capacity(nq * k * 4);
        for t in &truth {
            for i in 0..k {
                let id = t.get(i).map_or(u32::MAX, |s| s.id);
                ids.extend_from_slice(&id.to_le_bytes());
            }
        }
        std::fs::write(dir.join("ours_ids.u32"), ids).map_err(|e| e.to_string())?;
        let efs: Vec<String> = a.efs.iter().map(|e| e.to_string()).collect();
        println!("--- peer: {} {}", py, a.peer_script.display());
        let status = std::process::Command::new(py)
            .arg(&a.peer_script)
            .args(["--dir", &dir.to_string_lossy()])
            .args(["--dim", &dim.to_string(), "--k", &k.to_string()])
            .args(["--threads", &a.threads.to_string()])
            .args(["--m", &a.m.to_string(), "--efc", &a.efc.to_string()])
            .args(["--ef", &efs.join(",")])
            .args(if a.skip_ann {
                vec!["--skip-ann"]
            } else {
                vec![]
            })
            .env("OMP_NUM_THREADS", a.threads.to_string())
            .env("OPENBLAS_NUM_THREADS", a.threads.to_string())
            .env("MKL_NUM_THREADS", a.threads.to_string())
            .status()
            .map_err(|e| format!("cannot run {py}: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        if !status.success() {
            return Err(format!("peer script failed: {status}"));
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

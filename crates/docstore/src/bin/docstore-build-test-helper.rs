//! Test helper: builds an index with the deterministic fake encoder, optionally slowly.
//!
//! `docstore-build-test-helper CORPUS OUT [--dim N] [--batch-size N] [--max-words N]
//! [--overlap N] [--hnsw] [--bm25] [--f16] [--overwrite]`
//!
//! `RADIT_DOCSTORE_TEST_SLEEP_MS` makes every encoder batch sleep that long, so the
//! kill-and-resume test can SIGKILL the process mid-build. Prints `key=value` lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use radit_docstore::{
    build_index, Bm25Params, BoxError, BuildOptions, Embedder, EncoderIdentity, HashEmbedder,
    HnswParams, ProgressMode,
};

struct Slow {
    inner: HashEmbedder,
    sleep: Duration,
}

impl Embedder for Slow {
    fn identity(&self) -> EncoderIdentity {
        self.inner.identity()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        std::thread::sleep(self.sleep);
        self.inner.embed(texts)
    }
}

fn parse<T: std::str::FromStr>(v: Option<String>, flag: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| format!("bad value for {flag}"))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut opts = BuildOptions {
        progress: ProgressMode::Silent,
        ..BuildOptions::default()
    };
    let mut dim = 32usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dim" => dim = parse(args.next(), "--dim")?,
            "--batch-size" => opts.batch_size = parse(args.next(), "--batch-size")?,
            "--max-words" => opts.chunking.max_words = parse(args.next(), "--max-words")?,
            "--overlap" => opts.chunking.overlap = parse(args.next(), "--overlap")?,
            "--hnsw" => {
                opts.hnsw = Some(HnswParams {
                    m: 8,
                    ef_construction: 64,
                    ..HnswParams::default()
                })
            }
            "--bm25" => opts.bm25 = Some(Bm25Params::default()),
            "--f16" => opts.f16 = true,
            "--overwrite" => opts.overwrite = true,
            "--progress" => opts.progress = ProgressMode::Lines,
            _ => pos.push(a),
        }
    }
    let [corpus, out] = <[String; 2]>::try_from(pos)
        .map_err(|_| "usage: docstore-build-test-helper CORPUS OUT [options]".to_string())?;
    let sleep_ms: u64 = std::env::var("RADIT_DOCSTORE_TEST_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let enc = Slow {
        inner: HashEmbedder::new(dim, 42),
        sleep: Duration::from_millis(sleep_ms),
    };
    let report = build_index(&PathBuf::from(corpus), &PathBuf::from(out), &enc, &opts)
        .map_err(|e| e.to_string())?;
    println!("chunks={}", report.chunks);
    println!("resumed_from={}", report.resumed_from);
    println!("embedded={}", report.embedded);
    println!("malformed={}", report.ingest.malformed);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

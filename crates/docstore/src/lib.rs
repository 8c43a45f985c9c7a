//! radit-docstore: the knowledge base of RA-DIT.
//!
//! Corpus ingestion (JSONL, folders of `.txt`/`.md`, the Wikipedia summaries JSON), word-window
//! chunking, batched and resumable embedding through the [`Embedder`] trait, an on-disk index
//! (memory-mapped chunks and embeddings, manifest with checksums and encoder identity), and
//! search: exact inner product (blocked, multi-threaded, SIMD), HNSW, BM25 and hybrid (RRF).
//!
//! ```no_run
//! use radit_docstore::{build_index, BuildOptions, DocStore, HashEmbedder, Queries, SearchMode};
//! # fn main() -> radit_docstore::Result<()> {
//! let encoder = HashEmbedder::new(64, 0); // the real MiniLM encoder implements `Embedder` too
//! build_index("corpus.jsonl".as_ref(), "index".as_ref(), &encoder, &BuildOptions::default())?;
//! let store = DocStore::open_for_encoder("index", &radit_docstore::Embedder::identity(&encoder))?;
//! let q = encoder.embed_one("who wrote hamlet");
//! let hits = store.search(&Queries::embeddings(&q), 10, &SearchMode::default())?;
//! for h in &hits[0] {
//!     println!("{:.3} {} {}", h.score, h.chunk.title, h.chunk.text);
//! }
//! # Ok(()) }
//! ```
//!
//! The crate depends on no model code; see the crate README for the on-disk format.

#![warn(missing_docs)]

pub mod bm25;
pub mod build;
pub mod chunk;
pub mod corpus;
pub mod embed;
pub mod error;
pub mod exact;
mod fsutil;
pub mod hnsw;
pub mod kernels;
pub mod manifest;
pub mod progress;
pub mod shard;
pub mod store;
pub mod text;
pub mod topk;

pub use bm25::Bm25Params;
pub use build::{
    build_index, lock_path, partial_dir, read_progress, BuildOptions, BuildReport, EmbedProgress,
};
pub use chunk::{chunk_document, text_hash, ChunkParams, ChunkRecord};
pub use corpus::{
    load_corpus, read_corpus, CorpusFormat, Document, IngestIssue, IngestReport, Section,
};
pub use embed::{Embedder, EncoderIdentity, HashEmbedder};
pub use error::{BoxError, Error, Result};
pub use exact::exact_top_k;
pub use hnsw::HnswParams;
pub use manifest::Manifest;
pub use progress::ProgressMode;
pub use shard::{merge_shards, shard_dir, shards_dir, MergeOptions, MergeReport};
pub use store::{
    rrf, Dense, DocStore, Hit, Hybrid, IndexStats, OpenOptions, Queries, Retriever, SearchMode,
};
pub use topk::Scored;

//! `radit index build|search|stats`: the document store with the real BERT-family encoder.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use radit_docstore::{
    build_index, merge_shards, Bm25Params, BuildOptions, ChunkParams, CorpusFormat, DocStore,
    Embedder, HnswParams, MergeOptions, Queries, SearchMode,
};
use radit_pipeline::{load_embedder, IndexPlan, Recipe};
use radit_util::shard::Shard;

/// `radit index ...`
#[derive(Subcommand)]
pub enum IndexCommand {
    /// Chunk, embed and store a corpus (resumes an interrupted build of the same output);
    /// with `--shard I/N`, embed only shard I's part, for `radit index merge`.
    Build(BuildArgs),
    /// Build the index `--out` from the shards `radit index build --shard I/N` left in
    /// `OUT.shards/`: byte-for-byte what one process would have built.
    Merge(MergeArgs),
    /// Search an index and print rank, score, title and text of each hit.
    Search(SearchArgs),
    /// Print an index's manifest summary: counts, encoder, chunking, files.
    Stats {
        /// Index directory.
        dir: PathBuf,
    },
}

/// Arguments of `radit index build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Build the index a recipe reads (corpus, document encoder, output folder and chunking
    /// from its `[docstore]` and `retriever.encoder`), exactly as `radit train` would.
    #[arg(long, conflicts_with_all = ["corpus", "encoder", "out", "chunk_words", "overlap"])]
    recipe: Option<PathBuf>,
    /// Override a key of `--recipe` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "recipe")]
    sets: Vec<String>,
    /// Corpus: a .jsonl file, a folder of .txt/.md files, or the Wikipedia summaries JSON.
    #[arg(long, required_unless_present = "recipe")]
    corpus: Option<PathBuf>,
    /// Corpus format: auto, jsonl, text-dir or wiki-summaries.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Document encoder: a model directory or hub id.
    #[arg(long, required_unless_present = "recipe")]
    encoder: Option<String>,
    /// Output index directory.
    #[arg(long, required_unless_present = "recipe")]
    out: Option<PathBuf>,
    /// Maximum words per chunk.
    #[arg(long, default_value_t = ChunkParams::default().max_words)]
    chunk_words: usize,
    /// Words shared by consecutive chunks of a document.
    #[arg(long, default_value_t = ChunkParams::default().overlap)]
    overlap: usize,
    /// Approximate index to build: `hnsw`.
    #[arg(long)]
    ann: Option<String>,
    /// Also build a BM25 index.
    #[arg(long)]
    bm25: bool,
    /// Also store an f16 copy of the embeddings.
    #[arg(long)]
    f16: bool,
    /// Chunks per encoder batch (and per resumable step) [default: 32, or what `radit train`
    /// uses with --recipe].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Replace an existing index at `--out`.
    #[arg(long)]
    overwrite: bool,
    /// Discard an interrupted build instead of resuming it.
    #[arg(long)]
    restart: bool,
    /// Fail on malformed corpus lines instead of reporting and skipping them.
    #[arg(long)]
    strict: bool,
    /// Embed only this part of the chunks, as `I/N` (task I of N, from 0) or `slurm` (from
    /// SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); the shard goes to
    /// `OUT.shards/shard-I-of-N/`, and `radit index merge --out OUT` makes the index.
    #[arg(long, value_name = "I/N|slurm")]
    shard: Option<Shard>,
}

/// Arguments of `radit index merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The index to make; its shards are in `OUT.shards/`.
    #[arg(long, required_unless_present = "recipe", conflicts_with = "recipe")]
    out: Option<PathBuf>,
    /// Merge the index a recipe reads (its `docstore.index`, else `OUTPUT_DIR/index`).
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Override a key of `--recipe` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "recipe")]
    sets: Vec<String>,
    /// Replace an existing index at `--out`.
    #[arg(long)]
    overwrite: bool,
    /// Keep `OUT.shards/` after the merge (by default it is removed: it duplicates the
    /// embeddings).
    #[arg(long)]
    keep_shards: bool,
}

/// Arguments of `radit index search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Index directory.
    dir: PathBuf,
    /// Query text (repeat for several).
    #[arg(long, required = true)]
    query: Vec<String>,
    /// Hits per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// dense (HNSW if built, else exact), exact, exact-f16, ann, bm25 or hybrid.
    #[arg(long, default_value = "dense")]
    mode: String,
    /// Query encoder (default: the document encoder recorded in the index).
    #[arg(long)]
    encoder: Option<String>,
}

/// Runs one `radit index` command.
pub fn run(command: IndexCommand, device: &Device) -> Result<()> {
    match command {
        IndexCommand::Build(args) => build(args, device),
        IndexCommand::Merge(args) => {
            let options = MergeOptions {
                overwrite: args.overwrite,
                keep_shards: args.keep_shards,
                ..MergeOptions::default()
            };
            let out = match (&args.out, &args.recipe) {
                (Some(out), _) => out.clone(),
                (None, Some(recipe)) => {
                    let plan = IndexPlan::of(&Recipe::load(recipe, &args.sets)?);
                    let no_shards = !radit_docstore::shards_dir(&plan.dir).exists();
                    if plan.is_built() && !args.overwrite && no_shards {
                        eprintln!(
                            "index {} exists and has no shards: nothing to merge",
                            plan.dir.display()
                        );
                        return Ok(());
                    }
                    plan.dir
                }
                (None, None) => bail!("give --out INDEX or --recipe RECIPE"),
            };
            let report = merge_shards(&out, &options)
                .with_context(|| format!("merging the shards of {}", out.display()))?;
            eprintln!("{report}");
            Ok(())
        }
        IndexCommand::Search(args) => search(args, device),
        IndexCommand::Stats { dir } => {
            let store =
                DocStore::open(&dir).with_context(|| format!("opening index {}", dir.display()))?;
            print!("{}", store.stats());
            Ok(())
        }
    }
}

fn build(args: BuildArgs, device: &Device) -> Result<()> {
    let hnsw = match args.ann.as_deref() {
        None => None,
        Some("hnsw") => Some(HnswParams::default()),
        Some(other) => bail!("unknown --ann `{other}` (supported: hnsw)"),
    };
    let given = (&args.recipe, &args.corpus, &args.encoder, &args.out);
    let (corpus, encoder, out, chunking, batch_size) = match given {
        (Some(recipe), _, _, _) => {
            let plan = IndexPlan::of(&Recipe::load(recipe, &args.sets)?);
            if plan.is_built() && !args.overwrite {
                // What `radit train` does with it: the recipe's index is ready.
                eprintln!("index {} exists: nothing to build", plan.dir.display());
                return Ok(());
            }
            let o = plan.options;
            (
                plan.corpus,
                plan.encoder,
                plan.dir,
                o.chunking,
                o.batch_size,
            )
        }
        (None, Some(corpus), Some(encoder), Some(out)) => (
            corpus.clone(),
            encoder.clone(),
            out.clone(),
            ChunkParams {
                max_words: args.chunk_words,
                overlap: args.overlap,
            },
            32,
        ),
        _ => bail!("give --recipe RECIPE, or --corpus, --encoder and --out"),
    };
    let options = BuildOptions {
        format: args.format.parse::<CorpusFormat>()?,
        chunking,
        batch_size: args.batch_size.unwrap_or(batch_size),
        f16: args.f16,
        hnsw,
        bm25: args.bm25.then(Bm25Params::default),
        overwrite: args.overwrite,
        restart: args.restart,
        strict: args.strict,
        shard: args.shard.unwrap_or(Shard::WHOLE),
        ..BuildOptions::default()
    };
    let embedder = load_embedder(&encoder, device)?;
    let what = match options.shard {
        Shard::WHOLE => format!("building index {}", out.display()),
        shard => format!("building shard {shard} of index {}", out.display()),
    };
    let report = build_index(&corpus, &out, &embedder, &options).context(what)?;
    eprintln!("{report}");
    if !options.shard.is_whole() {
        eprintln!(
            "shard {} done; when all {} are, run `radit index merge --out {}`",
            options.shard,
            options.shard.count,
            out.display()
        );
    }
    Ok(())
}

fn search(args: SearchArgs, device: &Device) -> Result<()> {
    let mode: SearchMode = args.mode.parse()?;
    let store = DocStore::open(&args.dir)
        .with_context(|| format!("opening index {}", args.dir.display()))?;
    let texts: Vec<&str> = args.query.iter().map(String::as_str).collect();
    let embeddings = if mode.needs_embeddings() {
        let spec = args
            .encoder
            .unwrap_or_else(|| store.manifest().encoder.source.clone());
        let embedder = load_embedder(&spec, device)?;
        store.check_encoder(&embedder.identity())?;
        embedder
            .embed(&texts)
            .map_err(|e| anyhow::anyhow!("embedding the queries: {e}"))?
            .concat()
    } else {
        Vec::new()
    };
    let queries = if mode.needs_embeddings() {
        Queries::both(&embeddings, &texts)
    } else {
        Queries::texts(&texts)
    };
    let results = store.search(&queries, args.k, &mode)?;
    for (query, hits) in texts.iter().zip(results) {
        println!("query: {query}");
        for (rank, hit) in hits.iter().enumerate() {
            let text: String = hit.chunk.text.chars().take(240).collect();
            println!(
                "{:>3}  {:>8.4}  {}  |  {}",
                rank + 1,
                hit.score,
                hit.chunk.title,
                text.replace('\n', " ")
            );
        }
    }
    Ok(())
}

//! The generator's verdict on a background: `log p_LM(y | c ∘ x)` for many (example,
//! background) pairs, batched and without gradient, and an on-disk cache of these scores. R-ft
//! builds its targets from them and evaluation its ensemble.
//!
//! A score is keyed by a hash of everything that determines it: the generator's identity and
//! the exact token ids of the instance (prompt markers, background, instruction, answer).
//! Cached scores therefore survive restarts and are never reused for another generator or
//! another prompt — the paper's offline mode, made safe.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use radit_data::{BuildOutcome, Example, ExampleKey, InstanceBuilder, Tokenize};
use radit_models::layers::to_host;
use radit_models::{EncodeOptions, Llama, PaddingSide, TextTokenizer, TokenBatch};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::{target_log_likelihood, GeneratorError, LmTargets};

/// One example to score under one background (a chunk, several chunks, or none).
#[derive(Debug, Clone)]
pub struct ScoreRequest<'a> {
    /// The example's key (it seeds the prompt markers).
    pub key: ExampleKey,
    /// Question `x` and gold continuation `y` (its first answer).
    pub example: &'a Example,
    /// Background text, or `None` for a closed-book prompt.
    pub background: Option<String>,
}

/// `log p_LM(y | background ∘ x)`, summed over the continuation's tokens (EOS included).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LmScore {
    /// Summed log-probability.
    pub logprob: f32,
    /// Number of scored tokens.
    pub tokens: u32,
}

/// The generator's tokenizer seen through the data crate's interface (no special tokens
/// added: the instance builder places BOS/EOS itself).
pub struct PromptTokenizer<'a>(pub &'a TextTokenizer);

impl Tokenize for PromptTokenizer<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, radit_data::BoxError> {
        let options = EncodeOptions {
            add_special_tokens: false,
            ..Default::default()
        };
        Ok(self.0.encode_with(text, &options)?)
    }
    fn bos_id(&self) -> Option<u32> {
        self.0.bos_token().and_then(|t| self.0.token_id(t))
    }
    fn eos_id(&self) -> Option<u32> {
        self.0.stop_ids().first().copied()
    }
}

/// Scores continuations with a frozen generator.
pub struct LmScorer<'a, T: Tokenize> {
    model: &'a Llama,
    builder: &'a InstanceBuilder<T>,
    pad_id: u32,
    generator_id: String,
    batch_size: usize,
}

impl<'a, T: Tokenize> LmScorer<'a, T> {
    /// A scorer running `model` (on an inference device) over instances from `builder`.
    /// `generator_id` identifies the weights (e.g. a content hash) for the cache.
    pub fn new(
        model: &'a Llama,
        builder: &'a InstanceBuilder<T>,
        pad_id: u32,
        generator_id: impl Into<String>,
        batch_size: usize,
    ) -> Self {
        Self {
            model,
            builder,
            pad_id,
            generator_id: generator_id.into(),
            batch_size: batch_size.max(1),
        }
    }

    /// Scores every request, using and filling `cache` when given. `None` where the
    /// instruction and answer alone do not fit the builder's `max_len`.
    pub fn score(
        &self,
        requests: &[ScoreRequest<'_>],
        mut cache: Option<&mut ScoreCache>,
    ) -> Result<Vec<Option<LmScore>>, GeneratorError> {
        let mut out = vec![None; requests.len()];
        // (request index, cache key, ids, answer mask) of what must run through the model.
        let mut todo: Vec<(usize, u64, Vec<u32>, Vec<u8>)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let built = self
                .builder
                .instance(r.key, r.example, None, r.background.as_deref())?;
            let BuildOutcome::Built(inst) = built else {
                continue;
            };
            let key = self.cache_key(&inst.ids, &inst.answer_mask);
            match cache.as_deref().and_then(|c| c.get(key)) {
                Some(score) => out[i] = Some(score),
                None => todo.push((i, key, inst.ids, inst.answer_mask)),
            }
        }
        // Similar lengths together: less padding per batch.
        todo.sort_by_key(|t| t.2.len());
        for group in todo.chunks(self.batch_size) {
            let rows: Vec<Vec<u32>> = group.iter().map(|t| t.2.clone()).collect();
            let batch = TokenBatch::from_rows(&rows, self.pad_id, PaddingSide::Right)?;
            let mut mask = vec![0u8; batch.batch_size * batch.seq_len];
            for (r, t) in group.iter().enumerate() {
                mask[r * batch.seq_len..r * batch.seq_len + t.3.len()].copy_from_slice(&t.3);
            }
            let targets = LmTargets::from_answer_mask(&batch, &mask)?;
            let logprobs =
                to_host(target_log_likelihood(self.model, &batch, &targets)?.detach())?.data;
            for (t, logprob) in group.iter().zip(logprobs) {
                let score = LmScore {
                    logprob,
                    tokens: t.3.iter().map(|&m| u32::from(m)).sum(),
                };
                out[t.0] = Some(score);
                if let Some(c) = cache.as_deref_mut() {
                    c.insert(t.1, score)?;
                }
            }
        }
        Ok(out)
    }

    fn cache_key(&self, ids: &[u32], answer_mask: &[u8]) -> u64 {
        let mut h = Xxh3::new();
        h.update(self.generator_id.as_bytes());
        h.update(&[0]);
        for id in ids {
            h.update(&id.to_le_bytes());
        }
        h.update(answer_mask);
        h.digest()
    }
}

/// A content fingerprint of a model's weights (xxh3 over every float parameter in module
/// order): the generator identity of cached scores, valid for base and fine-tuned weights alike.
pub fn weights_fingerprint<M: Module>(model: &M) -> Result<String, GeneratorError> {
    struct Hasher {
        hash: Xxh3,
        error: Option<String>,
    }
    impl ModuleVisitor for Hasher {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match to_host(param.val()) {
                Ok(t) => {
                    for d in &t.shape {
                        self.hash.update(&(*d as u64).to_le_bytes());
                    }
                    for v in &t.data {
                        self.hash.update(&v.to_le_bytes());
                    }
                }
                Err(e) => self.error = Some(e.to_string()),
            }
        }
    }
    let mut hasher = Hasher {
        hash: Xxh3::new(),
        error: None,
    };
    model.visit(&mut hasher);
    match hasher.error {
        Some(e) => Err(GeneratorError::Targets(format!(
            "fingerprinting weights: {e}"
        ))),
        None => Ok(format!("{:016x}", hasher.hash.digest())),
    }
}

/// The readable lines of a cache file as `(key, score)`, and how many were not readable.
fn read_cache_lines(path: &Path) -> Result<(Vec<(u64, LmScore)>, usize), GeneratorError> {
    let io = |e| GeneratorError::Io(path.to_path_buf(), e);
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut lines = Vec::new();
    let mut skipped = 0;
    for line in reader.lines() {
        let line = line.map_err(io)?;
        let parsed = serde_json::from_str::<CacheLine>(&line)
            .ok()
            .and_then(|l| Some((u64::from_str_radix(&l.key, 16).ok()?, l)));
        match parsed {
            Some((key, l)) => lines.push((
                key,
                LmScore {
                    logprob: l.logprob,
                    tokens: l.tokens,
                },
            )),
            None => skipped += 1,
        }
    }
    Ok((lines, skipped))
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    key: String,
    logprob: f32,
    tokens: u32,
}

/// Scores on disk as JSON lines, appended as they are computed. A line torn by a killed
/// process is skipped (and recomputed) on the next open.
pub struct ScoreCache {
    path: PathBuf,
    scores: HashMap<u64, LmScore>,
    file: File,
    skipped_lines: usize,
}

impl ScoreCache {
    /// Opens (or creates) the cache file.
    pub fn open(path: &Path) -> Result<Self, GeneratorError> {
        let io = |e| GeneratorError::Io(path.to_path_buf(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let (lines, skipped_lines) = if path.is_file() {
            read_cache_lines(path)?
        } else {
            (Vec::new(), 0)
        };
        let scores: HashMap<u64, LmScore> = lines.into_iter().collect();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if skipped_lines > 0 {
            // Start appends on a fresh line after a torn one.
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            scores,
            file,
            skipped_lines,
        })
    }

    /// Number of cached scores.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Lines that could not be read (torn or corrupt) when the cache was opened.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// Adds the scores of another cache file (a shard's, from `radit score --shard`) that
    /// this one lacks, appending them here so this file alone holds them from then on.
    /// Returns how many were new; torn lines of `other` are skipped.
    pub fn absorb(&mut self, other: &Path) -> Result<usize, GeneratorError> {
        let (lines, _) = read_cache_lines(other)?;
        let mut added = 0;
        for (key, score) in lines {
            if !self.scores.contains_key(&key) {
                self.insert(key, score)?;
                added += 1;
            }
        }
        Ok(added)
    }

    fn get(&self, key: u64) -> Option<LmScore> {
        self.scores.get(&key).copied()
    }

    fn insert(&mut self, key: u64, score: LmScore) -> Result<(), GeneratorError> {
        let line = CacheLine {
            key: format!("{key:016x}"),
            logprob: score.logprob,
            tokens: score.tokens,
        };
        let mut text = serde_json::to_string(&line)
            .map_err(|e| GeneratorError::Targets(format!("score cache line: {e}")))?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| GeneratorError::Io(self.path.clone(), e))?;
        self.scores.insert(key, score);
        Ok(())
    }
}

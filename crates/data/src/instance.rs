use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Example};
use crate::error::{BoxError, DataError};
use crate::prompt::{markers, render_prompt, PromptParts, PromptStyle};
use crate::tokenize::Tokenize;

/// Identifies an example within a mixture: dataset index and example index in that dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExampleKey {
    /// Index of the dataset in the mixture.
    pub dataset: usize,
    /// Index of the example in its dataset.
    pub example: usize,
}

/// Settings of instance building.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// Longest instance in tokens (BOS and EOS included).
    pub max_len: usize,
    /// Prepend the tokenizer's BOS token (if it has one).
    pub add_bos: bool,
    /// Seed of the per-example marker draw.
    pub seed: u64,
}

/// One tokenized training instance: a prompt with one background chunk, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The example it comes from.
    pub key: ExampleKey,
    /// Index of the retrieved chunk used; `None` for a gold context or no background.
    pub chunk: Option<usize>,
    /// Token ids: `[BOS] prompt answer [EOS]`.
    pub ids: Vec<u32>,
    /// 1 on answer tokens and the EOS: `ids[i]` is a loss target, predicted from `ids[..i]`.
    pub answer_mask: Vec<u8>,
    /// Number of prompt tokens (BOS included); the answer starts here.
    pub prompt_len: usize,
    /// Background tokens cut to fit `max_len` (0 when it fit).
    pub background_tokens_dropped: usize,
}

impl Instance {
    /// Length in tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no token (never true for a built instance).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// An instance that could not be built, e.g. instruction plus answer alone exceed `max_len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInstance {
    /// The example.
    pub key: ExampleKey,
    /// The example id.
    pub id: String,
    /// The chunk index, as in [`Instance::chunk`].
    pub chunk: Option<usize>,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "example {}", self.id)?;
        if let Some(c) = self.chunk {
            write!(f, " (chunk {c})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Counts of what instance building did; the caller reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildReport {
    /// Examples seen.
    pub examples: usize,
    /// Instances built.
    pub instances: usize,
    /// Instances whose background was shortened (or dropped) to fit.
    pub truncated: usize,
    /// Background tokens cut in total.
    pub truncated_tokens: usize,
    /// Instances skipped, with reasons.
    pub skipped: Vec<SkippedInstance>,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} example(s) -> {} instance(s); {} with background truncated ({} tokens cut); {} skipped",
            self.examples,
            self.instances,
            self.truncated,
            self.truncated_tokens,
            self.skipped.len()
        )
    }
}

/// Result of building one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Built (possibly with background truncated).
    Built(Instance),
    /// Did not fit or had no answer.
    Skipped(SkippedInstance),
}

/// Tokenized prompt for generation or scoring at evaluation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    /// `[BOS] prompt`.
    pub ids: Vec<u32>,
    /// Background tokens cut to fit.
    pub background_tokens_dropped: usize,
}

/// Builds retrieval-augmented instances from examples and retrieved chunk texts.
pub struct InstanceBuilder<T: Tokenize> {
    tokenizer: T,
    config: InstanceConfig,
    style: PromptStyle,
}

struct Fitted {
    prompt: Vec<u32>,
    dropped: usize,
}

impl<T: Tokenize> InstanceBuilder<T> {
    /// A builder with the plain RA-DIT prompt. `tokenizer` may be a reference.
    pub fn new(tokenizer: T, config: InstanceConfig) -> Result<Self, DataError> {
        if config.max_len < 2 {
            return Err(DataError::InvalidConfig(format!(
                "max_len must be at least 2, got {}",
                config.max_len
            )));
        }
        Ok(Self {
            tokenizer,
            config,
            style: PromptStyle::Plain,
        })
    }

    /// Uses `style` (e.g. a chat template) for rendering.
    pub fn with_style(mut self, style: PromptStyle) -> Self {
        self.style = style;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// The prompt parts of an example with an optional background (for inspection and eval).
    pub fn render(
        &self,
        key: ExampleKey,
        question: &str,
        background: Option<&str>,
    ) -> Result<PromptParts, DataError> {
        render_prompt(
            &self.style,
            markers(self.config.seed, key),
            question,
            background,
        )
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.tokenizer.encode(text).map_err(DataError::Tokenizer)
    }

    fn bos(&self) -> Option<u32> {
        if self.config.add_bos {
            self.tokenizer.bos_id()
        } else {
            None
        }
    }

    /// Fits `[BOS] head chunk tail` into `budget` tokens by cutting the end of the chunk,
    /// then by dropping the background entirely; `None` when even that does not fit.
    fn fit(
        &self,
        key: ExampleKey,
        question: &str,
        background: Option<&str>,
        budget: usize,
    ) -> Result<Option<Fitted>, DataError> {
        let bos: Vec<u32> = self.bos().into_iter().collect();
        let parts = self.render(key, question, background)?;
        let head = self.encode(&parts.head)?;
        let chunk = self.encode(&parts.chunk)?;
        let tail = self.encode(&parts.tail)?;
        let fixed = bos.len() + head.len() + tail.len();
        let assemble =
            |chunk: &[u32]| -> Vec<u32> { [bos.as_slice(), &head, chunk, &tail].concat() };
        if fixed + chunk.len() <= budget {
            return Ok(Some(Fitted {
                prompt: assemble(&chunk),
                dropped: 0,
            }));
        }
        if !chunk.is_empty() && fixed < budget {
            let keep = budget - fixed;
            return Ok(Some(Fitted {
                prompt: assemble(&chunk[..keep]),
                dropped: chunk.len() - keep,
            }));
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        // Even an empty chunk leaves no room; without the background section (and, for chat
        // templates, re-rendered without it) the instruction may still fit.
        let bare = self.render(key, question, None)?;
        let bare_tail = self.encode(&bare.tail)?;
        if bos.len() + bare_tail.len() <= budget {
            Ok(Some(Fitted {
                prompt: [bos.as_slice(), &bare_tail].concat(),
                dropped: chunk.len(),
            }))
        } else {
            Ok(None)
        }
    }

    /// Builds one instance of `example` with `background` (a retrieved chunk or gold context);
    /// `chunk` is recorded in the instance.
    pub fn instance(
        &self,
        key: ExampleKey,
        example: &Example,
        chunk: Option<usize>,
        background: Option<&str>,
    ) -> Result<BuildOutcome, DataError> {
        let skipped = |reason: String| {
            Ok(BuildOutcome::Skipped(SkippedInstance {
                key,
                id: example.id.clone(),
                chunk,
                reason,
            }))
        };
        let Some(target) = example.target() else {
            return skipped("no answer".into());
        };
        let parts = self.render(key, &example.question, None)?;
        let mut answer = self.encode(&parts.answer_text(target))?;
        answer.extend(self.tokenizer.eos_id());
        if answer.is_empty() {
            return skipped("the answer encodes to no token".into());
        }
        let max_len = self.config.max_len;
        let budget = max_len.saturating_sub(answer.len());
        let fitted = if budget == 0 {
            None
        } else {
            self.fit(key, &example.question, background, budget)?
        };
        let Some(Fitted { prompt, dropped }) = fitted else {
            return skipped(format!(
                "instruction and answer alone exceed max_len {max_len} (answer: {} tokens)",
                answer.len()
            ));
        };
        let prompt_len = prompt.len();
        let mut answer_mask = vec![0u8; prompt_len];
        answer_mask.resize(prompt_len + answer.len(), 1);
        let mut ids = prompt;
        ids.extend_from_slice(&answer);
        Ok(BuildOutcome::Built(Instance {
            key,
            chunk,
            ids,
            answer_mask,
            prompt_len,
            background_tokens_dropped: dropped,
        }))
    }

    /// Builds the instances of one example: one per retrieved chunk (k independent
    /// instances), or a single one with the example's gold context when it has one, or a
    /// single one without background when `chunks` is empty. Skips and truncations are
    /// counted in `report`.
    pub fn instances<S: AsRef<str>>(
        &self,
        key: ExampleKey,
        example: &Example,
        chunks: &[S],
        report: &mut BuildReport,
    ) -> Result<Vec<Instance>, DataError> {
        report.examples += 1;
        let sources: Vec<(Option<usize>, Option<&str>)> = match &example.context {
            Some(ctx) => vec![(None, Some(ctx.as_str()))],
            None if chunks.is_empty() => vec![(None, None)],
            None => chunks
                .iter()
                .enumerate()
                .map(|(j, c)| (Some(j), Some(c.as_ref())))
                .collect(),
        };
        let mut out = Vec::with_capacity(sources.len());
        for (chunk, background) in sources {
            match self.instance(key, example, chunk, background)? {
                BuildOutcome::Built(inst) => {
                    report.instances += 1;
                    if inst.background_tokens_dropped > 0 {
                        report.truncated += 1;
                        report.truncated_tokens += inst.background_tokens_dropped;
                    }
                    out.push(inst);
                }
                BuildOutcome::Skipped(s) => report.skipped.push(s),
            }
        }
        Ok(out)
    }

    /// Builds the instances of every example of `dataset` (dataset index `dataset_index` in
    /// the mixture), asking `retrieve` for each example's top-k chunk texts. Examples with a
    /// gold context use it, and `retrieve` is not called for them.
    pub fn instances_for_dataset<F>(
        &self,
        dataset_index: usize,
        dataset: &Dataset,
        mut retrieve: F,
        report: &mut BuildReport,
    ) -> Result<Vec<Instance>, DataError>
    where
        F: FnMut(&Example) -> Result<Vec<String>, BoxError>,
    {
        let mut out = Vec::new();
        for (e, example) in dataset.examples.iter().enumerate() {
            let chunks = if example.context.is_some() {
                Vec::new()
            } else {
                retrieve(example).map_err(|source| DataError::Retrieval {
                    id: example.id.clone(),
                    source,
                })?
            };
            let key = ExampleKey {
                dataset: dataset_index,
                example: e,
            };
            out.extend(self.instances(key, example, &chunks, report)?);
        }
        Ok(out)
    }

    /// Tokenized prompt (no answer) for generation, fitted so that `reserve` tokens remain
    /// for the continuation; `None` when the instruction alone does not fit.
    pub fn prompt(
        &self,
        key: ExampleKey,
        question: &str,
        background: Option<&str>,
        reserve: usize,
    ) -> Result<Option<PromptTokens>, DataError> {
        let budget = self.config.max_len.saturating_sub(reserve);
        Ok(self
            .fit(key, question, background, budget)?
            .map(|f| PromptTokens {
                ids: f.prompt,
                background_tokens_dropped: f.dropped,
            }))
    }
}

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::instance::Instance;
use crate::rng::{mix, stream, TAG_MIXTURE, TAG_ORDER};

/// Settings of the sampler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// Instances per batch.
    pub batch_size: usize,
    /// Seed of the mixture draw and the epoch order.
    pub seed: u64,
    /// Per-dataset cap η on examples per epoch (the paper uses 7,500); `None` for no cap.
    pub cap: Option<usize>,
    /// Drop an epoch's final partial batch (unless the epoch is shorter than one batch).
    pub drop_last: bool,
}

/// The sampler's position, saved in checkpoints. Restoring it yields exactly the batches an
/// uninterrupted run would have produced next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SamplerState {
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Instances of this epoch's order already handed out.
    pub cursor: u64,
}

/// A batch of instance indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledBatch {
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Indices into the instance list the sampler was built over.
    pub indices: Vec<usize>,
}

/// Groups instance indices by dataset and example (`groups[d][e]` = instances of example `e`
/// of dataset `d`), the input of [`Sampler::new`]. `num_datasets` may exceed the datasets
/// present; examples without instances are left out.
pub fn group_instances(instances: &[Instance], num_datasets: usize) -> Vec<Vec<Vec<usize>>> {
    let mut by_key: Vec<std::collections::BTreeMap<usize, Vec<usize>>> =
        vec![Default::default(); num_datasets];
    for (i, inst) in instances.iter().enumerate() {
        if inst.key.dataset >= by_key.len() {
            by_key.resize_with(inst.key.dataset + 1, Default::default);
        }
        by_key[inst.key.dataset]
            .entry(inst.key.example)
            .or_default()
            .push(i);
    }
    by_key
        .into_iter()
        .map(|m| m.into_values().collect())
        .collect()
}

/// Which examples each dataset contributes to `epoch`: all of them when a dataset has at most
/// `cap`, else `cap` drawn without replacement from (seed, epoch, dataset). Returned sorted.
/// Concatenating the selections gives a size-proportional mixture with the paper's cap η.
pub fn mixture_selection(
    sizes: &[usize],
    cap: Option<usize>,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    sizes
        .iter()
        .enumerate()
        .map(|(d, &n)| match cap {
            Some(c) if n > c => {
                let mut rng = stream(mix(&[seed, TAG_MIXTURE, epoch, d as u64]));
                let mut all: Vec<usize> = (0..n).collect();
                // Partial Fisher-Yates: the first c slots end up a uniform sample.
                for i in 0..c {
                    let j = i + rng.below((n - i) as u64) as usize;
                    all.swap(i, j);
                }
                all.truncate(c);
                all.sort_unstable();
                all
            }
            _ => (0..n).collect(),
        })
        .collect()
}

/// Deterministic, resumable sampler over a mixture of datasets.
///
/// Each epoch takes the capped mixture selection of examples, gathers all their instances (the
/// k chunks of an example are independent instances), shuffles them with a generator seeded
/// from (seed, epoch) and hands them out in batches. Everything is a pure function of
/// (seed, epoch, cursor), so [`SamplerState`] is all a checkpoint needs.
#[derive(Debug, Clone)]
pub struct Sampler {
    groups: Vec<Vec<Vec<usize>>>,
    config: SamplerConfig,
    state: SamplerState,
    order: Vec<usize>,
}

impl Sampler {
    /// A sampler at epoch 0 over `groups` (see [`group_instances`]).
    pub fn new(groups: Vec<Vec<Vec<usize>>>, config: SamplerConfig) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size must be positive".into(),
            ));
        }
        if config.cap == Some(0) {
            return Err(DataError::InvalidConfig(
                "the mixture cap must be positive".into(),
            ));
        }
        // Examples without instances would make epoch sizes depend on nothing useful.
        let groups: Vec<Vec<Vec<usize>>> = groups
            .into_iter()
            .map(|d| d.into_iter().filter(|e| !e.is_empty()).collect())
            .collect();
        if groups.iter().all(Vec::is_empty) {
            return Err(DataError::InvalidConfig(
                "the sampler has no instance to draw".into(),
            ));
        }
        let mut s = Self {
            groups,
            config,
            state: SamplerState::default(),
            order: Vec::new(),
        };
        s.order = s.epoch_order(0);
        Ok(s)
    }

    /// A sampler over a flat instance list, grouped by [`Instance::key`].
    pub fn from_instances(
        instances: &[Instance],
        config: SamplerConfig,
    ) -> Result<Self, DataError> {
        Self::new(group_instances(instances, 0), config)
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The current position.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Moves to a saved position (e.g. from a checkpoint).
    pub fn restore(&mut self, state: SamplerState) -> Result<(), DataError> {
        let order = self.epoch_order(state.epoch);
        if state.cursor > order.len() as u64 {
            return Err(DataError::BadSamplerState {
                state: format!("epoch {} cursor {}", state.epoch, state.cursor),
                reason: format!(
                    "the epoch has only {} instances (was the data or its cap changed?)",
                    order.len()
                ),
            });
        }
        self.order = order;
        self.state = state;
        Ok(())
    }

    /// The full instance order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let sizes: Vec<usize> = self.groups.iter().map(Vec::len).collect();
        let selection = mixture_selection(&sizes, self.config.cap, self.config.seed, epoch);
        let mut order: Vec<usize> = selection
            .iter()
            .enumerate()
            .flat_map(|(d, examples)| {
                examples
                    .iter()
                    .flat_map(move |&e| self.groups[d][e].iter().copied())
            })
            .collect();
        stream(mix(&[self.config.seed, TAG_ORDER, epoch])).shuffle(&mut order);
        order
    }

    /// Number of batches in `epoch`.
    pub fn batches_in_epoch(&self, epoch: u64) -> usize {
        let n = self.epoch_order(epoch).len();
        let bs = self.config.batch_size;
        if self.config.drop_last && n >= bs {
            n / bs
        } else {
            n.div_ceil(bs)
        }
    }

    fn epoch_done(&self) -> bool {
        let remaining = self.order.len() - self.state.cursor as usize;
        remaining == 0
            || (self.config.drop_last
                && remaining < self.config.batch_size
                && self.order.len() >= self.config.batch_size)
    }

    /// The next batch, moving to the next epoch when this one is exhausted.
    pub fn next_batch(&mut self) -> SampledBatch {
        // Bounded: a fresh epoch always has at least one instance (checked in `new`).
        while self.epoch_done() {
            self.state = SamplerState {
                epoch: self.state.epoch + 1,
                cursor: 0,
            };
            self.order = self.epoch_order(self.state.epoch);
        }
        let start = self.state.cursor as usize;
        let end = (start + self.config.batch_size).min(self.order.len());
        self.state.cursor = end as u64;
        SampledBatch {
            epoch: self.state.epoch,
            indices: self.order[start..end].to_vec(),
        }
    }
}

impl Iterator for Sampler {
    type Item = SampledBatch;

    /// Endless: epochs follow one another.
    fn next(&mut self) -> Option<SampledBatch> {
        Some(self.next_batch())
    }
}

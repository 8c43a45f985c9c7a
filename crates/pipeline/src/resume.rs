//! What may change between a run and its `--resume`: settings that leave the batches, the
//! model and the optimizer's trajectory up to the resumed step alone. Everything else would
//! silently mix two experiments in one run directory, so it is refused.

use std::collections::BTreeMap;

use serde::Serialize;
use toml::Value;

use crate::error::{PipelineError, Result};
use crate::recipe::Recipe;

/// Recipe keys a resume may change (`*` matches one key segment): run length, checkpointing,
/// evaluation and logging. `max_steps` extends or shortens a run; note that a cosine or
/// linear schedule without an explicit `total_steps` then decays over the new length.
pub const RESUMABLE_CHANGES: &[&str] = &[
    "stages.*.train.max_steps",
    "stages.*.train.save_every",
    "stages.*.train.save_every_minutes",
    "stages.*.train.keep_last",
    "stages.*.train.eval_every",
    "stages.*.train.early_stopping_patience",
    // Only how later checkpoints store the moments; any stored form is read back.
    "stages.*.train.optimizer_state_dtype",
    "stages.r_ft.eval_depth",
    "logging.*",
    "data.dev",
    "data.dev_limit",
    "data.answer_tokens",
];

/// One setting that differs between a run's recipe and the one it is resumed with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The dotted key.
    pub key: String,
    /// The run's value (`None`: absent).
    pub from: Option<String>,
    /// The new value (`None`: absent).
    pub to: Option<String>,
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn to_value(recipe: &Recipe) -> Result<Value> {
    Value::try_from(recipe)
        .map_err(|e| PipelineError::Invalid(format!("serializing the recipe: {e}")))
}

/// The settings that differ between `old` (the run's) and `new`, apart from `output_dir`
/// (the run itself). Both are typed recipes, so a default that one file spells out and the
/// other leaves implicit is no difference.
pub fn changes(old: &Recipe, new: &Recipe) -> Result<Vec<Change>> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &to_value(old)?, &mut a);
    flatten("", &to_value(new)?, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| k.as_str() != "output_dir" && a.get(*k) != b.get(*k))
        .map(|k| Change {
            key: k.clone(),
            from: a.get(k).cloned(),
            to: b.get(k).cloned(),
        })
        .collect())
}

/// Whether a resume may change `key`.
pub fn resumable(key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    RESUMABLE_CHANGES.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.split('.').collect();
        match pattern.last() {
            // `logging.*` covers the whole table.
            Some(&"*") if pattern.len() == 2 => segments.first() == pattern.first(),
            _ => {
                pattern.len() == segments.len()
                    && pattern
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| *p == "*" || p == s)
            }
        }
    })
}

/// Checks a resume's changes: every one must be [`resumable`]; the error lists the others
/// with both values.
pub fn check(changes: &[Change]) -> Result<()> {
    let refused: Vec<String> = changes
        .iter()
        .filter(|c| !resumable(&c.key))
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c.key,
                c.from.as_deref().unwrap_or("(absent)"),
                c.to.as_deref().unwrap_or("(absent)")
            )
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Invalid(format!(
        "--resume would change settings the run was trained with, which breaks exact resume: {}. \
         Resume with the run's settings (its recipe.toml), or start a new run (another \
         --output-dir, or --overwrite). A resume may change only: {}",
        refused.join("; "),
        RESUMABLE_CHANGES.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_length_logging_and_evaluation_may_change_but_not_data_or_optimizer() {
        for key in [
            "stages.lm_ft.train.max_steps",
            "stages.r_ft.train.eval_every",
            "logging.tensorboard",
            "data.dev_limit",
        ] {
            assert!(resumable(key), "{key}");
        }
        for key in [
            "stages.lm_ft.train.lr",
            "data.batch_size",
            "data.train_limit",
            "seed",
            "stages.lm_ft.train.schedule.total_steps",
            "retriever.search",
        ] {
            assert!(!resumable(key), "{key}");
        }
        let err = check(&[Change {
            key: "data.batch_size".into(),
            from: Some("4".into()),
            to: Some("8".into()),
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data.batch_size: 4 -> 8") && err.contains("--overwrite"),
            "{err}"
        );
    }
}

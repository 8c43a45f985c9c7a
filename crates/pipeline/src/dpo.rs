//! The DPO stage: the generator learns reviewers' preferred answers over rejected ones
//! (Direct Preference Optimization, Rafailov et al. 2023), on the RA-DIT prompt LM-ft trains
//! on: `Background: {top-1 chunk}\n\n{instruction}{answer}`, the chunk retrieved for the
//! question by the current query encoder. The reference model is the generator the stage
//! starts from; its log-probabilities are computed once, before training.

use std::io::BufRead;
use std::path::Path;

use radit_data::{BuildReport, ExampleKey};
use radit_generator::dpo::{pair_instances, DpoConfig, DpoObjective};
use radit_models::Llama;
use radit_train::trainer::TrainConfig;
use serde::Deserialize;

use crate::error::{invalid, PipelineError, Result};
use crate::lm_ft::{
    adopt_generator, export_generator, generator_dev_metrics, load_trainable_generator,
    retrieve_backgrounds,
};
use crate::recipe::DpoSection;
use crate::run_dir::StageDir;
use crate::stage::{BuiltinStage, Context, Models, Prepared, Stage};

/// One reviewed pair of `preferences.jsonl` (TRL's DPO format; other fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Preference {
    /// The question.
    pub prompt: String,
    /// The answer the reviewer preferred.
    pub chosen: String,
    /// The answer the reviewer rejected.
    pub rejected: String,
}

/// Reads `preferences.jsonl`: one [`Preference`] per line, blank lines skipped. A line that
/// is not such an object, has an empty field or the same chosen and rejected answer is an
/// error naming the file and line, and so is a file without any pair.
pub fn load_preferences(path: &Path) -> Result<Vec<Preference>> {
    let file = std::fs::File::open(path).map_err(|e| PipelineError::io(path, e))?;
    read_preferences(std::io::BufReader::new(file), path)
}

/// [`load_preferences`] from any reader; `path` names it in errors.
pub fn read_preferences<R: BufRead>(reader: R, path: &Path) -> Result<Vec<Preference>> {
    let bad = |line: usize, message: String| PipelineError::Preferences {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| bad(n, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let pref: Preference = serde_json::from_str(&line).map_err(|e| {
            bad(
                n,
                format!("expected {{\"prompt\", \"chosen\", \"rejected\"}} strings: {e}"),
            )
        })?;
        for (field, value) in [
            ("prompt", &pref.prompt),
            ("chosen", &pref.chosen),
            ("rejected", &pref.rejected),
        ] {
            if value.trim().is_empty() {
                return Err(bad(n, format!("`{field}` is empty")));
            }
        }
        // The loss of such a pair is ln 2 with zero gradient whatever the model: a
        // reviewing mistake rather than a preference.
        if pref.chosen.trim() == pref.rejected.trim() {
            return Err(bad(n, "`chosen` and `rejected` are the same answer".into()));
        }
        out.push(pref);
    }
    if out.is_empty() {
        return Err(PipelineError::Preferences {
            path: path.to_path_buf(),
            line: 0,
            message: "holds no preference pair".into(),
        });
    }
    Ok(out)
}

/// DPO as configured by `[stages.dpo]`.
pub struct DpoStage {
    section: DpoSection,
}

impl DpoStage {
    /// The stage of a recipe's `[stages.dpo]` section.
    pub fn new(section: DpoSection) -> Self {
        Self { section }
    }
}

impl Stage for DpoStage {
    type Model = Llama;

    fn name(&self) -> &str {
        BuiltinStage::Dpo.name()
    }

    fn title(&self) -> &str {
        "generator (DPO, top-1 chunk)"
    }

    fn train_config(&self) -> &TrainConfig {
        &self.section.train
    }

    fn prepare<'a>(
        &'a self,
        ctx: &'a Context<'a>,
        models: &'a Models,
        _stage: &StageDir,
    ) -> Result<Prepared<'a, Llama>> {
        let section = &self.section;
        let preferences = load_preferences(&section.preferences)?;
        // The current query encoder: after R-ft, the chunks the trained retriever finds are
        // the ones the generator will read at inference time.
        let query = models.query(ctx);
        let questions: Vec<&str> = preferences.iter().map(|p| p.prompt.as_str()).collect();
        let backgrounds = retrieve_backgrounds(ctx, &query, &questions, 1)?;
        let mut report = BuildReport::default();
        let mut pairs = Vec::with_capacity(preferences.len());
        for (i, (pref, chunks)) in preferences.iter().zip(&backgrounds).enumerate() {
            let key = ExampleKey {
                dataset: 0,
                example: i,
            };
            let background = chunks.first().map(String::as_str);
            let pair = pair_instances(
                ctx.builder,
                key,
                &pref.prompt,
                &pref.chosen,
                &pref.rejected,
                background,
                &mut report,
            )?;
            pairs.extend(pair);
        }
        tracing::info!(
            "{}: {} of {} preference pairs fit data.max_len ({report})",
            section.preferences.display(),
            pairs.len(),
            preferences.len()
        );
        if pairs.is_empty() {
            invalid!(
                "stages.dpo.preferences: no pair of {} fits data.max_len {}",
                section.preferences.display(),
                ctx.recipe.data.max_len
            );
        }
        // π_ref is the generator as the stage starts; scoring it here, once, means it need
        // not be kept next to the trained copy.
        let objective = DpoObjective::new(
            &models.generator,
            pairs,
            DpoConfig {
                beta: section.beta,
                batch_size: section.batch_size,
                seed: ctx.recipe.seed,
                pad_id: ctx.tokenizer.pad_id(),
            },
        )?;
        Ok(Prepared {
            start: models.generator.clone(),
            trainable: load_trainable_generator(ctx, models)?,
            objective: Box::new(objective),
            dev: generator_dev_metrics(ctx, query),
        })
    }

    fn export(
        &self,
        ctx: &Context<'_>,
        model: Llama,
        stage: &StageDir,
        models: &mut Models,
    ) -> Result<()> {
        export_generator(ctx, model, stage, models)
    }

    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()> {
        adopt_generator(ctx, stage, models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Preference>> {
        read_preferences(text.as_bytes(), Path::new("reviews/preferences.jsonl"))
    }

    #[test]
    fn preferences_parse_in_trl_format() {
        let prefs = read(concat!(
            "{\"prompt\": \"Who opened Quorble Cafe?\", \"chosen\": \"Ada Lint\", \"rejected\": \"John\"}\n",
            "\n",
            "{\"prompt\": \"Where?\", \"chosen\": \"Lisbon\", \"rejected\": \"Porto\", \"reviewer\": 3}\n",
        ))
        .unwrap();
        assert_eq!(prefs.len(), 2);
        assert_eq!(
            prefs[0],
            Preference {
                prompt: "Who opened Quorble Cafe?".into(),
                chosen: "Ada Lint".into(),
                rejected: "John".into(),
            }
        );
    }

    #[test]
    fn bad_preference_lines_name_file_and_line() {
        let good = "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
        let cases = [
            (
                format!("{good}{{\"prompt\": \"q\", \"chosen\": \"a\"}}\n"),
                ":2:",
                "rejected",
            ),
            (format!("{good}\n{good}not json\n"), ":4:", "expected"),
            (
                format!("{good}{{\"prompt\": \"q\", \"chosen\": [\"a\"], \"rejected\": \"b\"}}\n"),
                ":2:",
                "expected",
            ),
            (
                "{\"prompt\": \" \", \"chosen\": \"a\", \"rejected\": \"b\"}\n".to_string(),
                ":1:",
                "`prompt` is empty",
            ),
            (
                "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"a \"}\n".to_string(),
                ":1:",
                "same answer",
            ),
        ];
        for (text, line, why) in cases {
            let err = read(&text).unwrap_err().to_string();
            assert!(
                err.starts_with("reviews/preferences.jsonl")
                    && err.contains(line)
                    && err.contains(why),
                "{text:?}: {err}"
            );
        }
        for empty in ["", "\n  \n"] {
            let err = read(empty).unwrap_err().to_string();
            assert_eq!(err, "reviews/preferences.jsonl: holds no preference pair");
        }
        let missing = load_preferences(Path::new("/nonexistent/preferences.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("/nonexistent/preferences.jsonl"),
            "{missing}"
        );
    }
}

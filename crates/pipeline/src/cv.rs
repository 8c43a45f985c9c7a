//! k-fold cross-validation: the recipe once per fold, then mean and standard deviation of
//! each fold's final dev metrics.

use serde::Serialize;

use crate::error::{invalid, PipelineError, Result};
use crate::pipeline::Pipeline;
use crate::recipe::Recipe;
use crate::run_dir::RunDir;

/// One metric across the folds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldMetric {
    /// `{stage label}/{metric}`, e.g. `lm_ft/dev/em`.
    pub metric: String,
    /// The value of each fold (NaN where a fold did not report it).
    pub folds: Vec<f64>,
    /// Mean over folds.
    pub mean: f64,
    /// Sample standard deviation over folds.
    pub std: f64,
}

/// What a cross-validation reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CvSummary {
    /// One row per metric.
    pub metrics: Vec<FoldMetric>,
    /// Whether a signal stopped a fold (the summary is then partial and not written).
    pub interrupted: bool,
}

impl CvSummary {
    /// The summary as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let folds = self.metrics.first().map_or(0, |m| m.folds.len());
        let cols: Vec<String> = (0..folds).map(|f| format!("fold {f}")).collect();
        let mut md = format!(
            "| metric | {} | mean | std |\n|---|{}---|---|\n",
            cols.join(" | "),
            "---|".repeat(folds)
        );
        for m in &self.metrics {
            let cells: Vec<String> = m.folds.iter().map(|v| format!("{v:.3}")).collect();
            md.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} |\n",
                m.metric,
                cells.join(" | "),
                m.mean,
                m.std
            ));
        }
        md
    }
}

/// Runs `make_pipeline(fold recipe)` for each of `folds` folds (`data.folds`, `data.fold`)
/// under `run/fold-N`, then writes the summary to `run/cv.json`. `load(sets)` loads the
/// recipe with extra `--set` overrides (the fold's), so a fold's resolved recipe records them.
pub fn cross_validate(
    folds: usize,
    run: &RunDir,
    load: impl Fn(&[String]) -> Result<Recipe>,
    make_pipeline: impl Fn(Recipe) -> Pipeline,
) -> Result<CvSummary> {
    if folds < 2 {
        invalid!("--folds must be at least 2, got {folds}");
    }
    let mut per_fold: Vec<Vec<(String, f64)>> = Vec::new();
    for fold in 0..folds {
        tracing::info!("== fold {} of {folds}", fold + 1);
        let sets = [format!("data.folds={folds}"), format!("data.fold={fold}")];
        let mut recipe = load(&sets)?;
        recipe.output_dir = run.fold(fold).root().to_path_buf();
        let summary = make_pipeline(recipe).run()?;
        if summary.interrupted {
            return Ok(CvSummary {
                metrics: Vec::new(),
                interrupted: true,
            });
        }
        per_fold.push(summary.metrics);
    }
    let names: Vec<String> = per_fold
        .first()
        .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        invalid!("the folds reported no dev metric (does the recipe have dev data and a stage?)");
    }
    let metrics: Vec<FoldMetric> = names
        .iter()
        .map(|name| {
            let values: Vec<f64> = per_fold
                .iter()
                .map(|s| {
                    s.iter()
                        .find(|(n, _)| n == name)
                        .map_or(f64::NAN, |(_, v)| *v)
                })
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / (values.len().max(2) - 1) as f64;
            FoldMetric {
                metric: name.clone(),
                folds: values,
                mean,
                std: var.sqrt(),
            }
        })
        .collect();
    let path = run.cv_summary();
    let json = serde_json::to_vec_pretty(&metrics).map_err(|e| PipelineError::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    radit_util::fs::atomic_write(&path, &json)?;
    tracing::info!("wrote {}", path.display());
    Ok(CvSummary {
        metrics,
        interrupted: false,
    })
}

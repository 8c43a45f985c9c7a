//! The run directory: the one place that knows where a run keeps its recipe, index, stages,
//! checkpoints, final weights, done markers, logs and evaluation reports.
//!
//! ```text
//! RUN/recipe.toml                 the resolved recipe
//! RUN/index/                      the index, unless the recipe names one
//! RUN/<stage>/                    a stage of a one-round run (`lm_ft`, `r_ft`, ...)
//! RUN/round-N/<stage>/            a stage of round N (1-based) when `stages.rounds > 1`
//!     checkpoints/  final/  done.json  metrics.jsonl  lm_scores.jsonl
//! RUN/tensorboard/<stage path>/   TensorBoard events of each stage
//! RUN/fold-N/                     a cross-validation fold (itself a run), RUN/cv.json
//! ```

use std::path::{Path, PathBuf};

use radit_eval::summary::StageLogFile;
use serde::{Deserialize, Serialize};

use radit_util::shard::Shard;

use crate::error::{PipelineError, Result};

/// Marker written when a stage has completed: a resumed pipeline skips the stage and
/// continues from its `final/` weights.
const DONE: &str = "done.json";

/// A training run's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run rooted at `root` (nothing is created or read).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// An existing run: fails unless `root` holds the resolved recipe a run writes first.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let run = Self::new(root);
        if !run.recipe_path().is_file() {
            return Err(PipelineError::RunDir {
                path: run.root.clone(),
                message: "not a training run directory (no recipe.toml)".into(),
            });
        }
        Ok(run)
    }

    /// The run's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolved recipe the run was started with.
    pub fn recipe_path(&self) -> PathBuf {
        self.root.join("recipe.toml")
    }

    /// Whether the folder holds a run (its resolved recipe, written when a run starts).
    pub fn holds_run(&self) -> bool {
        self.recipe_path().is_file()
    }

    /// Where the changes each `--resume` made to the recipe are recorded (JSON lines).
    pub fn resume_log(&self) -> PathBuf {
        self.root.join("resumes.jsonl")
    }

    /// Removes everything a run wrote (`--overwrite`): the recipe, stage and round folders
    /// (`stages` names the run's stages), TensorBoard events, folds, reports and logs. The
    /// index is kept: it depends only on the corpus and the document encoder, which the
    /// opener checks, and takes the longest to rebuild. Files radit did not write are left.
    pub fn clear(&self, stages: &[String]) -> Result<()> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| PipelineError::io(&self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PipelineError::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name == "recipe.toml"
                || name == "tensorboard"
                || name == "cv.json"
                || name == "resumes.jsonl"
                || stages.contains(&name)
                || round_number(&name).is_some()
                || name
                    .strip_prefix("fold-")
                    .is_some_and(|n| n.parse::<u64>().is_ok())
                || (name.starts_with("eval-") && name.ends_with(".json"));
            if !ours {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| PipelineError::io(&path, e))?;
        }
        Ok(())
    }

    /// Where the index is built when the recipe names none.
    pub fn default_index(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Stage `name` of round `round` (1-based) in a run of `rounds` rounds.
    pub fn stage(&self, name: &str, round: usize, rounds: usize) -> StageDir {
        let relative = if rounds <= 1 {
            PathBuf::from(name)
        } else {
            Path::new(&format!("round-{round}")).join(name)
        };
        let label = if rounds <= 1 {
            name.to_string()
        } else {
            format!("{name} (round {round})")
        };
        StageDir {
            name: name.to_string(),
            round,
            dir: self.root.join(&relative),
            relative,
            label,
        }
    }

    /// Every stage in run order: `order` repeated for `rounds` rounds.
    pub fn stages(&self, order: &[String], rounds: usize) -> Vec<StageDir> {
        let rounds = rounds.max(1);
        (1..=rounds)
            .flat_map(|round| order.iter().map(move |name| (round, name)))
            .map(|(round, name)| self.stage(name, round, rounds))
            .collect()
    }

    /// The `final/` weights of the last completed stage called `name` (in run order), e.g.
    /// the latest trained generator (`lm_ft`) or query encoder (`r_ft`) of a multi-round run.
    pub fn latest_final(&self, order: &[String], rounds: usize, name: &str) -> Option<PathBuf> {
        self.latest_final_of(order, rounds, &[name])
            .map(|(_, dir)| dir)
    }

    /// The `final/` weights of the last completed stage (in run order) called any of
    /// `names`, with that stage's name: the latest generator when both `lm_ft` and `dpo`
    /// train it.
    pub fn latest_final_of(
        &self,
        order: &[String],
        rounds: usize,
        names: &[&str],
    ) -> Option<(String, PathBuf)> {
        self.stages(order, rounds)
            .into_iter()
            .rev()
            .filter(|s| names.contains(&s.name.as_str()))
            .find(StageDir::is_done)
            .map(|s| (s.name.clone(), s.final_dir()))
    }

    /// TensorBoard run folder of `stage`.
    pub fn tensorboard_dir(&self, stage: &StageDir) -> PathBuf {
        self.root.join("tensorboard").join(&stage.relative)
    }

    /// Default file of an evaluation report named `name` (e.g. `eval-ensemble.json`).
    pub fn eval_report(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Fold `fold` (0-based) of a cross-validation, itself a run.
    pub fn fold(&self, fold: usize) -> RunDir {
        RunDir::new(self.root.join(format!("fold-{fold}")))
    }

    /// The cross-validation summary.
    pub fn cv_summary(&self) -> PathBuf {
        self.root.join("cv.json")
    }

    /// The per-stage metric logs on disk, in report order: the directory's own
    /// `metrics.jsonl` (when it is itself one stage's folder), then rounds in numeric order
    /// (`round-N/<stage>`), then the one-round stages (`lm_ft`, `r_ft`, ...) by name. Used
    /// where the recipe may be unknown (`radit report`).
    pub fn stage_logs(&self) -> Result<Vec<StageLogFile>> {
        let root = &self.root;
        if !root.is_dir() {
            return Err(PipelineError::RunDir {
                path: root.clone(),
                message: "is not a directory".into(),
            });
        }
        let has_log = |relative: &str| root.join(relative).join("metrics.jsonl").is_file();
        let mut stages: Vec<String> = Vec::new();
        if has_log("") {
            stages.push(String::new());
        }
        for sub in subdirs(root)? {
            if has_log(&sub) {
                stages.push(sub.clone());
            }
            if round_number(&sub).is_some() {
                for stage in subdirs(&root.join(&sub))? {
                    let relative = format!("{sub}/{stage}");
                    if has_log(&relative) {
                        stages.push(relative);
                    }
                }
            }
        }
        if stages.is_empty() {
            return Err(PipelineError::RunDir {
                path: root.clone(),
                message: "no metrics.jsonl (expected lm_ft/, r_ft/ or round-N/<stage>/)".into(),
            });
        }
        Ok(stages
            .into_iter()
            .map(|stage| StageLogFile {
                metrics: root.join(&stage).join("metrics.jsonl"),
                stage,
            })
            .collect())
    }
}

/// `round-N` → N.
fn round_number(name: &str) -> Option<u64> {
    name.strip_prefix("round-")?.parse().ok()
}

/// Names of the sub-folders of `dir`: rounds in numeric order first, then the others by name.
fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| PipelineError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PipelineError::io(dir, e))?;
        // A name that is not UTF-8 cannot be a stage radit wrote.
        if let (true, Some(name)) = (entry.path().is_dir(), entry.file_name().to_str()) {
            names.push(name.to_string());
        }
    }
    names.sort_by_key(|n| (round_number(n).unwrap_or(u64::MAX), n.clone()));
    Ok(names)
}

/// One stage of a run: its folder and what lives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDir {
    /// The stage's name (`lm_ft`, `r_ft`, or a registered stage's).
    pub name: String,
    /// Its round, from 1.
    pub round: usize,
    /// The folder.
    pub dir: PathBuf,
    /// The folder relative to the run root (`lm_ft`, `round-2/r_ft`).
    pub relative: PathBuf,
    /// How logs and tables name it (`lm_ft`, `lm_ft (round 2)`).
    pub label: String,
}

impl StageDir {
    /// The exported weights of the completed stage.
    pub fn final_dir(&self) -> PathBuf {
        self.dir.join("final")
    }

    /// The stage's JSONL metric log.
    pub fn metrics_log(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// R-ft's on-disk cache of generator scores.
    pub fn score_cache(&self) -> PathBuf {
        self.dir.join("lm_scores.jsonl")
    }

    /// The score cache `radit score --shard I/N` fills for one shard; training absorbs every
    /// shard's file into [`StageDir::score_cache`].
    pub fn score_cache_shard(&self, shard: Shard) -> PathBuf {
        self.dir
            .join(format!("lm_scores.{}.jsonl", shard.file_tag()))
    }

    /// The shard score caches present, in name order.
    pub fn score_cache_shards(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PipelineError::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PipelineError::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("lm_scores.shard-") && name.ends_with(".jsonl") {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the stage completed (done marker and final weights present).
    pub fn is_done(&self) -> bool {
        self.dir.join(DONE).is_file() && self.final_dir().is_dir()
    }

    /// The report of the stage when it completed earlier.
    pub fn read_done(&self) -> Result<Option<StageDone>> {
        if !self.is_done() {
            return Ok(None);
        }
        let path = self.dir.join(DONE);
        let text = std::fs::read_to_string(&path).map_err(|e| PipelineError::io(&path, e))?;
        let done = serde_json::from_str(&text).map_err(|e| PipelineError::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(done))
    }

    /// Marks the stage complete with its report (atomically: a crash leaves no half marker).
    pub fn mark_done(&self, done: &StageDone) -> Result<()> {
        let path = self.dir.join(DONE);
        let json = serde_json::to_vec_pretty(done).map_err(|e| PipelineError::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(radit_util::fs::atomic_write(&path, &json)?)
    }
}

/// What a completed stage reports: its rows of the result table and its final dev metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageDone {
    /// Markdown table rows (before / after on the dev set).
    pub rows: Vec<String>,
    /// Final dev metrics, e.g. `("dev/em", 0.7)`.
    pub metrics: Vec<(String, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(stage: &StageDir) {
        std::fs::create_dir_all(stage.final_dir()).unwrap();
        stage.mark_done(&StageDone::default()).unwrap();
    }

    #[test]
    fn one_round_stages_live_at_the_root_and_rounds_under_round_n() {
        let run = RunDir::new("/runs/x");
        let one = run.stage("lm_ft", 1, 1);
        assert_eq!(one.dir, Path::new("/runs/x/lm_ft"));
        assert_eq!(one.label, "lm_ft");
        let two = run.stage("r_ft", 2, 3);
        assert_eq!(two.dir, Path::new("/runs/x/round-2/r_ft"));
        assert_eq!(two.label, "r_ft (round 2)");
        assert_eq!(
            run.tensorboard_dir(&two),
            Path::new("/runs/x/tensorboard/round-2/r_ft")
        );
        let order = ["lm_ft".to_string(), "r_ft".to_string()];
        let labels: Vec<String> = run.stages(&order, 2).into_iter().map(|s| s.label).collect();
        assert_eq!(
            labels,
            [
                "lm_ft (round 1)",
                "r_ft (round 1)",
                "lm_ft (round 2)",
                "r_ft (round 2)"
            ]
        );
    }

    #[test]
    fn the_latest_final_is_the_last_completed_round() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path());
        let order = ["lm_ft".to_string(), "r_ft".to_string()];
        assert_eq!(run.latest_final(&order, 3, "lm_ft"), None);
        complete(&run.stage("lm_ft", 1, 3));
        complete(&run.stage("r_ft", 1, 3));
        complete(&run.stage("lm_ft", 2, 3));
        // Round 2's R-ft was interrupted: final weights without a done marker do not count.
        std::fs::create_dir_all(run.stage("r_ft", 2, 3).final_dir()).unwrap();
        assert_eq!(
            run.latest_final(&order, 3, "lm_ft"),
            Some(tmp.path().join("round-2/lm_ft/final"))
        );
        assert_eq!(
            run.latest_final(&order, 3, "r_ft"),
            Some(tmp.path().join("round-1/r_ft/final"))
        );
        // The same folders read as a one-round run hold no stage at the root.
        assert_eq!(run.latest_final(&order, 1, "lm_ft"), None);
    }

    #[test]
    fn done_markers_round_trip_and_a_corrupt_one_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = RunDir::new(tmp.path()).stage("lm_ft", 1, 1);
        std::fs::create_dir_all(stage.final_dir()).unwrap();
        assert_eq!(stage.read_done().unwrap(), None);
        let done = StageDone {
            rows: vec!["| a |".into()],
            metrics: vec![("dev/em".into(), 0.5)],
        };
        stage.mark_done(&done).unwrap();
        assert_eq!(stage.read_done().unwrap(), Some(done));
        std::fs::write(stage.dir.join(DONE), "{not json").unwrap();
        let err = stage.read_done().unwrap_err().to_string();
        assert!(err.contains("done.json"), "{err}");
    }

    #[test]
    fn clear_removes_what_a_run_wrote_and_keeps_the_index_and_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path());
        for dir in [
            "lm_ft/final",
            "round-2/r_ft",
            "tensorboard/lm_ft",
            "index",
            "fold-0",
            "notes",
        ] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        }
        for file in [
            "recipe.toml",
            "eval-base-ensemble.json",
            "cv.json",
            "mine.txt",
        ] {
            std::fs::write(tmp.path().join(file), "x").unwrap();
        }
        assert!(run.holds_run());
        run.clear(&["lm_ft".to_string(), "r_ft".to_string()])
            .unwrap();
        assert!(!run.holds_run());
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["index", "mine.txt", "notes"]);
    }

    #[test]
    fn stage_logs_are_found_in_report_order() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        for stage in [
            "",
            "lm_ft",
            "r_ft",
            "round-10/r_ft",
            "round-2/lm_ft",
            "empty",
        ] {
            std::fs::create_dir_all(run.join(stage)).unwrap();
            if stage != "empty" {
                std::fs::write(run.join(stage).join("metrics.jsonl"), "").unwrap();
            }
        }
        let logs = RunDir::new(run).stage_logs().unwrap();
        let stages: Vec<&str> = logs.iter().map(|l| l.stage.as_str()).collect();
        assert_eq!(
            stages,
            ["", "round-2/lm_ft", "round-10/r_ft", "lm_ft", "r_ft"]
        );
        assert_eq!(logs[1].metrics, run.join("round-2/lm_ft/metrics.jsonl"));
        let empty = RunDir::new(run.join("empty"))
            .stage_logs()
            .unwrap_err()
            .to_string();
        assert!(empty.contains("no metrics.jsonl"), "{empty}");
        let none = RunDir::new(run.join("none"))
            .stage_logs()
            .unwrap_err()
            .to_string();
        assert!(none.contains("is not a directory"), "{none}");
    }
}

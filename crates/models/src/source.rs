//! Where a model comes from: a local directory, a GGUF file, or a Hugging Face hub id
//! resolved through the standard hub cache (the layout Python's `huggingface_hub` writes).

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// A model location, resolved to files on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedSource {
    /// A directory with `config.json`, weights (safetensors or `pytorch_model.bin`) and
    /// `tokenizer.json`.
    Dir(PathBuf),
    /// A single GGUF file (weights, config and tokenizer in its metadata).
    Gguf(PathBuf),
}

impl ResolvedSource {
    /// The path this source points at.
    pub fn path(&self) -> &Path {
        match self {
            Self::Dir(p) | Self::Gguf(p) => p,
        }
    }
}

/// The hub cache directory: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// Whether `HF_HUB_OFFLINE` asks for no network access (same truthy values as huggingface_hub).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Files a model directory may hold; the ones present in a hub repo are fetched.
const REQUIRED_FILES: &[&str] = &["config.json", "tokenizer.json"];
const OPTIONAL_FILES: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// How hub ids are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache directory.
    pub cache_dir: PathBuf,
    /// Never touch the network; a cache miss is an error.
    pub offline: bool,
}

impl HubOptions {
    /// From `HF_HUB_CACHE`/`HF_HOME` and `HF_HUB_OFFLINE`, as huggingface_hub reads them.
    pub fn from_env() -> Self {
        Self {
            cache_dir: hub_cache_dir(),
            offline: hub_offline(),
        }
    }
}

/// Resolves a model spec with hub settings from the environment; see [`resolve_with`].
pub fn resolve(spec: &str) -> Result<ResolvedSource> {
    resolve_with(spec, &HubOptions::from_env())
}

/// Resolves a model spec: an existing directory or `.gguf` file, or a hub id `owner/name`
/// (optionally `owner/name:file.gguf` for one GGUF file of a repo).
pub fn resolve_with(spec: &str, hub: &HubOptions) -> Result<ResolvedSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ResolvedSource::Dir(path.to_path_buf()));
    }
    if path.is_file() {
        return if spec.to_ascii_lowercase().ends_with(".gguf") {
            Ok(ResolvedSource::Gguf(path.to_path_buf()))
        } else {
            Err(ModelError::Source {
                source_spec: spec.into(),
                message: "a model file must be a .gguf file; safetensors and pytorch_model.bin models are given as their directory".into(),
            })
        };
    }
    let (repo, gguf_file) = match spec.split_once(':') {
        Some((repo, file)) => (repo, Some(file)),
        None => (spec, None),
    };
    let looks_like_id = repo.split('/').count() == 2
        && repo.split('/').all(|p| !p.is_empty())
        && !spec.starts_with('.')
        && !spec.starts_with('/');
    if !looks_like_id {
        return Err(ModelError::Source {
            source_spec: spec.into(),
            message: "no such file or directory, and not a hub id of the form owner/name".into(),
        });
    }
    let fetch = |file: &str| fetch_file(spec, repo, file, hub);
    match gguf_file {
        Some(file) => fetch(file).map(ResolvedSource::Gguf),
        None => {
            let config = fetch("config.json")?;
            let snapshot =
                config
                    .parent()
                    .map(Path::to_path_buf)
                    .ok_or_else(|| ModelError::Source {
                        source_spec: spec.into(),
                        message: "cached config.json has no parent directory".into(),
                    })?;
            for file in &REQUIRED_FILES[1..] {
                fetch(file)?;
            }
            for file in OPTIONAL_FILES {
                // Absent optional files are normal (a plain BERT has no pooling config).
                let _ = fetch(file);
            }
            fetch_weights(&fetch)?;
            Ok(ResolvedSource::Dir(snapshot))
        }
    }
}

/// Fetches a repo's weights: `model.safetensors` or its sharded index, else (for repos that
/// ship only PyTorch checkpoints) `pytorch_model.bin` or its sharded index. The first error is
/// reported when none is there.
fn fetch_weights(fetch: &dyn Fn(&str) -> Result<PathBuf>) -> Result<()> {
    let single = fetch("model.safetensors");
    if single.is_ok() {
        return Ok(());
    }
    if let Ok(index) = fetch("model.safetensors.index.json") {
        return fetch_shards(fetch, &index, |path, message| ModelError::Safetensors {
            path,
            message,
        });
    }
    if fetch(crate::pytorch::PYTORCH_FILE).is_ok() {
        return Ok(());
    }
    if let Ok(index) = fetch(crate::pytorch::PYTORCH_INDEX) {
        return fetch_shards(fetch, &index, |path, message| ModelError::Pytorch {
            path,
            message,
        });
    }
    single.map(|_| ())
}

/// Fetches every shard a sharded checkpoint's index names.
fn fetch_shards(
    fetch: &dyn Fn(&str) -> Result<PathBuf>,
    index: &Path,
    bad: impl Fn(PathBuf, String) -> ModelError,
) -> Result<()> {
    for shard in crate::weights::read_weight_map(index, bad)?.keys() {
        fetch(shard)?;
    }
    Ok(())
}

/// One file of a hub repo: from the cache, else (unless offline) downloaded into it.
fn fetch_file(spec: &str, repo: &str, file: &str, hub: &HubOptions) -> Result<PathBuf> {
    let cache_dir = &hub.cache_dir;
    let cache = hf_hub::Cache::new(cache_dir.clone());
    if let Some(path) = cache.model(repo.to_owned()).get(file) {
        return Ok(path);
    }
    if hub.offline {
        return Err(ModelError::Source {
            source_spec: spec.into(),
            message: format!(
                "`{file}` of `{repo}` is not in the hub cache {} and HF_HUB_OFFLINE is set; \
                 download it on a machine with internet or point HF_HUB_CACHE/HF_HOME at a cache that has it",
                cache_dir.display()
            ),
        });
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
        .with_progress(false)
        .build()
        .map_err(|e| ModelError::Source {
            source_spec: spec.into(),
            message: format!("cannot start the hub client: {e}"),
        })?;
    api.model(repo.to_owned())
        .get(file)
        .map_err(|e| ModelError::Source {
            source_spec: spec.into(),
            message: format!(
                "`{file}` of `{repo}` is not in the hub cache {} and downloading it failed: {e}",
                cache_dir.display()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn hub_id_resolves_to_cached_snapshot_offline() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--acme--tiny");
        write(&repo.join("refs/main"), "abc123");
        let snap = repo.join("snapshots/abc123");
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            write(&snap.join(f), "{}");
        }
        let hub = HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
        };
        assert_eq!(
            resolve_with("acme/tiny", &hub).unwrap(),
            ResolvedSource::Dir(snap.clone())
        );
        write(&snap.join("m.gguf"), "x");
        assert_eq!(
            resolve_with("acme/tiny:m.gguf", &hub).unwrap(),
            ResolvedSource::Gguf(snap.join("m.gguf"))
        );
    }

    #[test]
    fn hub_repo_with_only_pytorch_weights_resolves() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--acme--legacy");
        write(&repo.join("refs/main"), "def456");
        let snap = repo.join("snapshots/def456");
        let hub = HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
        };
        for f in ["config.json", "tokenizer.json"] {
            write(&snap.join(f), "{}");
        }
        // No weights at all: the safetensors miss is what the error reports.
        let err = resolve_with("acme/legacy", &hub).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        write(&snap.join("pytorch_model.bin"), "x");
        assert_eq!(
            resolve_with("acme/legacy", &hub).unwrap(),
            ResolvedSource::Dir(snap.clone())
        );
        // A sharded PyTorch checkpoint needs every shard its index names.
        std::fs::remove_file(snap.join("pytorch_model.bin")).unwrap();
        write(
            &snap.join("pytorch_model.bin.index.json"),
            r#"{"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}"#,
        );
        write(&snap.join("pytorch_model-00001-of-00002.bin"), "x");
        let err = resolve_with("acme/legacy", &hub).unwrap_err().to_string();
        assert!(err.contains("pytorch_model-00002-of-00002.bin"), "{err}");
        write(&snap.join("pytorch_model-00002-of-00002.bin"), "x");
        assert_eq!(
            resolve_with("acme/legacy", &hub).unwrap(),
            ResolvedSource::Dir(snap)
        );
    }

    #[test]
    fn offline_cache_miss_names_id_and_cache() {
        let cache = tempfile::tempdir().unwrap();
        let hub = HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
        };
        let err = resolve_with("acme/absent", &hub).unwrap_err().to_string();
        assert!(err.contains("acme/absent"), "{err}");
        assert!(err.contains(&cache.path().display().to_string()), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    }

    #[test]
    fn rejects_paths_that_are_not_models() {
        let err = resolve("./no/such/dir").unwrap_err().to_string();
        assert!(err.contains("not a hub id"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("weights.bin");
        std::fs::write(&f, b"x").unwrap();
        let err = resolve(f.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains(".gguf"), "{err}");
    }
}

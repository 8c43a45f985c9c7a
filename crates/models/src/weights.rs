//! Checkpoint readers: named f32 tensors from safetensors or PyTorch checkpoints (single or
//! sharded) and GGUF files.
//!
//! Model builders ask for tensors by their Hugging Face name; each reader maps those names onto
//! its own format, so one builder serves every checkpoint format.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::pytorch::{PytorchSource, PYTORCH_FILE, PYTORCH_INDEX};

/// A dense f32 tensor read from a checkpoint, row-major in PyTorch shape order.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// PyTorch-order shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A checkpoint that yields f32 tensors by Hugging Face name.
pub trait TensorSource {
    /// A human-readable name (path) for error messages.
    fn source_name(&self) -> String;
    /// Whether the checkpoint holds a tensor of this name.
    fn contains(&self, name: &str) -> bool;
    /// Reads and converts one tensor to f32.
    fn read(&self, name: &str) -> Result<HostTensor>;

    /// Reads a tensor and checks its shape.
    fn read_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let t = self.read(name)?;
        if t.shape != expected {
            return Err(ModelError::ShapeMismatch {
                source_name: self.source_name(),
                tensor: name.to_owned(),
                found: t.shape,
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }
}

/// One or more memory-mapped safetensors files (sharded checkpoints use
/// `model.safetensors.index.json` to say which file holds which tensor).
pub struct SafetensorsSource {
    name: String,
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name → index into `files`
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// Opens a single `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<Self> {
        let mut source = Self {
            name: path.display().to_string(),
            files: Vec::new(),
            index: BTreeMap::new(),
        };
        source.add_file(path, None)?;
        Ok(source)
    }

    /// Opens a model directory: `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_file(&single);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.is_file() {
            return Err(ModelError::Source {
                source_spec: dir.display().to_string(),
                message: "no model.safetensors or model.safetensors.index.json in this directory"
                    .into(),
            });
        }
        let by_file = read_weight_map(&index_path, |path, message| ModelError::Safetensors {
            path,
            message,
        })?;
        let mut source = Self {
            name: dir.display().to_string(),
            files: Vec::new(),
            index: BTreeMap::new(),
        };
        for (file, tensors) in by_file {
            source.add_file(&dir.join(&file), Some(&tensors))?;
        }
        Ok(source)
    }

    fn add_file(&mut self, path: &Path, expected: Option<&[String]>) -> Result<()> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only and checkpoints are not modified while a model loads;
        // a concurrent writer could at worst make us read garbage values, never unsound memory.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        // Parsing validates the header and that every tensor's byte range lies inside the file,
        // which is how a truncated file is caught before any tensor is read.
        let names: Vec<String> = SafeTensors::deserialize(&mmap)
            .map_err(|e| ModelError::Safetensors {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(expected) = expected {
            if let Some(missing) = expected.iter().find(|t| !names.contains(t)) {
                return Err(ModelError::Safetensors {
                    path: path.to_path_buf(),
                    message: format!("the index lists `{missing}` in this shard but it is absent"),
                });
            }
        }
        let file_index = self.files.len();
        for name in names {
            self.index.insert(name, file_index);
        }
        self.files.push((path.to_path_buf(), mmap));
        Ok(())
    }

    /// xxh3-64 over the bytes of every file, in order: identifies the exact weights (an index
    /// built with one encoder must not be searched with another).
    pub fn content_hash(&self) -> String {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (_, mmap) in &self.files {
            hasher.update(mmap);
        }
        format!("xxh3:{:016x}", hasher.digest())
    }

    /// Names of every tensor in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl TensorSource for SafetensorsSource {
    fn source_name(&self) -> String {
        self.name.clone()
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let missing = || ModelError::MissingTensor {
            source_name: self.name.clone(),
            tensor: name.to_owned(),
        };
        let file_index = *self.index.get(name).ok_or_else(missing)?;
        let (path, mmap) = self.files.get(file_index).ok_or_else(missing)?;
        let bad = |message: String| ModelError::Safetensors {
            path: path.clone(),
            message,
        };
        let st = SafeTensors::deserialize(mmap).map_err(|e| bad(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; radit reads F32, F16 and BF16"
                )))
            }
        };
        Ok(HostTensor {
            shape: view.shape().to_vec(),
            data,
        })
    }
}

/// Reads a sharded checkpoint's index (`*.index.json`): shard file name → the tensors it
/// holds. Shard names must stay inside the model directory. `bad` builds the error for the
/// checkpoint format involved.
pub(crate) fn read_weight_map(
    index_path: &Path,
    bad: impl Fn(PathBuf, String) -> ModelError,
) -> Result<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| ModelError::io(index_path, e))?;
    let bad = |message: String| bad(index_path.to_path_buf(), message);
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let weight_map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in weight_map {
        let file = file.as_str().ok_or_else(|| {
            bad(format!(
                "weight_map entry for `{tensor}` is not a file name"
            ))
        })?;
        let inside = Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || file.is_empty() {
            return Err(bad(format!(
                "weight_map entry for `{tensor}` names `{}`, which is not a file inside the model directory",
                file.escape_debug()
            )));
        }
        by_file
            .entry(file.to_owned())
            .or_default()
            .push(tensor.clone());
    }
    Ok(by_file)
}

/// The weights of a model directory, whatever format they are in: safetensors
/// (`model.safetensors` or its sharded index), preferred when present, else a PyTorch
/// checkpoint (`pytorch_model.bin` or its sharded index). Both yield the same
/// [`HostTensor`]s by Hugging Face name.
pub enum WeightsSource {
    /// `model.safetensors` or `model.safetensors.index.json`.
    Safetensors(SafetensorsSource),
    /// `pytorch_model.bin` or `pytorch_model.bin.index.json`.
    Pytorch(PytorchSource),
}

impl WeightsSource {
    /// Opens the weights of a model directory, safetensors first.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let has = |f: &str| dir.join(f).is_file();
        if has("model.safetensors") || has("model.safetensors.index.json") {
            SafetensorsSource::open_dir(dir).map(Self::Safetensors)
        } else if has(PYTORCH_FILE) || has(PYTORCH_INDEX) {
            PytorchSource::open_dir(dir).map(Self::Pytorch)
        } else {
            Err(ModelError::Source {
                source_spec: dir.display().to_string(),
                message: format!(
                    "no model.safetensors, model.safetensors.index.json, {PYTORCH_FILE} or \
                     {PYTORCH_INDEX} in this directory"
                ),
            })
        }
    }

    /// xxh3-64 over the bytes of every weight file, in order: identifies the exact weights.
    pub fn content_hash(&self) -> String {
        match self {
            Self::Safetensors(s) => s.content_hash(),
            Self::Pytorch(s) => s.content_hash(),
        }
    }

    /// Names of every tensor in the checkpoint, sorted.
    pub fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Self::Safetensors(s) => Box::new(s.names()),
            Self::Pytorch(s) => Box::new(s.names()),
        }
    }

    fn inner(&self) -> &dyn TensorSource {
        match self {
            Self::Safetensors(s) => s,
            Self::Pytorch(s) => s,
        }
    }
}

impl TensorSource for WeightsSource {
    fn source_name(&self) -> String {
        self.inner().source_name()
    }

    fn contains(&self, name: &str) -> bool {
        self.inner().contains(name)
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        self.inner().read(name)
    }
}

/// A GGUF file holding a Llama-architecture model, read under Hugging Face tensor names.
///
/// llama.cpp's converter permutes the rows of the q and k projections for its interleaved
/// RoPE; this reader undoes that per head so the weights work with rotate-half RoPE.
pub struct GgufLlamaSource {
    path: PathBuf,
    file: GgufFile,
    n_head: usize,
    n_kv_head: usize,
}

impl GgufLlamaSource {
    /// Wraps an opened GGUF file; head counts are needed for the q/k un-permutation.
    pub fn new(path: &Path, file: GgufFile, n_head: usize, n_kv_head: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            file,
            n_head,
            n_kv_head,
        }
    }

    /// The underlying GGUF file (metadata, tokenizer).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The GGUF name for a Hugging Face Llama tensor name, and the head count to
    /// un-permute with for q/k projections.
    fn gguf_name(&self, hf: &str) -> Option<(String, Option<usize>)> {
        let simple = match hf {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(s) = simple {
            return Some((s.to_owned(), None));
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (module, suffix) = rest.rsplit_once('.')?;
        let (name, heads) = match module {
            "self_attn.q_proj" => ("attn_q", Some(self.n_head)),
            "self_attn.k_proj" => ("attn_k", Some(self.n_kv_head)),
            "self_attn.v_proj" => ("attn_v", None),
            "self_attn.o_proj" => ("attn_output", None),
            "mlp.gate_proj" => ("ffn_gate", None),
            "mlp.up_proj" => ("ffn_up", None),
            "mlp.down_proj" => ("ffn_down", None),
            "input_layernorm" => ("attn_norm", None),
            "post_attention_layernorm" => ("ffn_norm", None),
            _ => return None,
        };
        Some((format!("blk.{layer}.{name}.{suffix}"), heads))
    }
}

/// Undoes llama.cpp's q/k row permutation: rows stored as `[heads, head_dim/2, 2]`
/// (interleaved pairs) go back to `[heads, 2, head_dim/2]` (two halves). Works on a
/// weight matrix (`cols` = input width) or a bias (`cols` = 1).
pub fn unpermute_qk_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + i * 2 + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl TensorSource for GgufLlamaSource {
    fn source_name(&self) -> String {
        self.path.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.gguf_name(name)
            .is_some_and(|(g, _)| self.file.tensor(&g).is_some())
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let missing = || ModelError::MissingTensor {
            source_name: self.source_name(),
            tensor: name.to_owned(),
        };
        let (gguf_name, heads) = self.gguf_name(name).ok_or_else(missing)?;
        if self.file.tensor(&gguf_name).is_none() {
            return Err(missing());
        }
        let (shape, data) = self.file.tensor_f32(&gguf_name)?;
        let data = match heads {
            Some(heads) => {
                let rows = shape.first().copied().unwrap_or(0);
                let cols = shape.iter().skip(1).product::<usize>();
                // A zero-sized dimension would let a corrupt `rows` (2^63, say) drive the
                // permutation loop over empty slices for minutes: the shape must be the data.
                if heads == 0
                    || rows % heads != 0
                    || (rows / heads) % 2 != 0
                    || rows.checked_mul(cols) != Some(data.len())
                    || data.is_empty()
                {
                    return Err(ModelError::ShapeMismatch {
                        source_name: self.source_name(),
                        tensor: gguf_name,
                        found: shape,
                        expected: vec![heads * 2, cols],
                    });
                }
                unpermute_qk_rows(&data, rows, cols, heads)
            }
            None => data,
        };
        Ok(HostTensor { shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's permutation, written independently from its converter: rows of each head
    /// `[2, half]` (halves) → `[half, 2]` (interleaved).
    fn permute_like_llama_cpp(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
        let half = rows / heads / 2;
        let mut out = vec![0.0; data.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let src = h * 2 * half + j * half + i;
                    let dst = h * 2 * half + i * 2 + j;
                    out[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&data[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        let (rows, cols, heads) = (24, 3, 3);
        let original: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let permuted = permute_like_llama_cpp(&original, rows, cols, heads);
        assert_ne!(permuted, original);
        assert_eq!(unpermute_qk_rows(&permuted, rows, cols, heads), original);
    }
}

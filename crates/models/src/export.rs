//! Writes models as Hugging Face checkpoints (`model.safetensors`, `config.json`,
//! `tokenizer.json`, `tokenizer_config.json`) that radit and transformers both load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::bert::{Bert, Pooling};
use crate::error::{ModelError, Result};
use crate::layers::{linear_to_torch, to_host, LayerNorm, RmsNorm};
use crate::llama::Llama;
use crate::loader::{Encoder, Generator};
use crate::tokenizer::TextTokenizer;
use crate::weights::HostTensor;

type Named = Vec<(String, HostTensor)>;

fn push_linear(out: &mut Named, prefix: &str, linear: &burn::nn::Linear) -> Result<()> {
    let (w, b) = linear_to_torch(linear)?;
    out.push((format!("{prefix}.weight"), w));
    if let Some(b) = b {
        out.push((format!("{prefix}.bias"), b));
    }
    Ok(())
}

fn push_rms(out: &mut Named, prefix: &str, norm: &RmsNorm) -> Result<()> {
    out.push((format!("{prefix}.weight"), to_host(norm.weight.val())?));
    Ok(())
}

fn push_ln(out: &mut Named, prefix: &str, norm: &LayerNorm) -> Result<()> {
    out.push((format!("{prefix}.weight"), to_host(norm.weight.val())?));
    out.push((format!("{prefix}.bias"), to_host(norm.bias.val())?));
    Ok(())
}

/// Every Llama weight under its Hugging Face name, in PyTorch layout.
pub fn llama_tensors(model: &Llama) -> Result<Named> {
    let mut out = Named::new();
    out.push((
        "model.embed_tokens.weight".into(),
        to_host(model.embed_tokens.weight.val())?,
    ));
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push_rms(
            &mut out,
            &format!("{p}.input_layernorm"),
            &layer.input_layernorm,
        )?;
        let a = &layer.self_attn;
        push_linear(&mut out, &format!("{p}.self_attn.q_proj"), &a.q_proj)?;
        push_linear(&mut out, &format!("{p}.self_attn.k_proj"), &a.k_proj)?;
        push_linear(&mut out, &format!("{p}.self_attn.v_proj"), &a.v_proj)?;
        push_linear(&mut out, &format!("{p}.self_attn.o_proj"), &a.o_proj)?;
        push_rms(
            &mut out,
            &format!("{p}.post_attention_layernorm"),
            &layer.post_attention_layernorm,
        )?;
        push_linear(
            &mut out,
            &format!("{p}.mlp.gate_proj"),
            &layer.mlp.gate_proj,
        )?;
        push_linear(&mut out, &format!("{p}.mlp.up_proj"), &layer.mlp.up_proj)?;
        push_linear(
            &mut out,
            &format!("{p}.mlp.down_proj"),
            &layer.mlp.down_proj,
        )?;
    }
    push_rms(&mut out, "model.norm", &model.norm)?;
    if let Some(head) = &model.lm_head {
        push_linear(&mut out, "lm_head", head)?;
    }
    Ok(out)
}

/// Every BERT weight under its Hugging Face name (with the prefix the model was loaded with).
pub fn bert_tensors(model: &Bert) -> Result<Named> {
    let pre = model.prefix();
    let mut out = Named::new();
    let e = &model.embeddings;
    for (name, emb) in [
        ("word_embeddings", &e.word_embeddings),
        ("position_embeddings", &e.position_embeddings),
        ("token_type_embeddings", &e.token_type_embeddings),
    ] {
        out.push((
            format!("{pre}embeddings.{name}.weight"),
            to_host(emb.weight.val())?,
        ));
    }
    push_ln(
        &mut out,
        &format!("{pre}embeddings.LayerNorm"),
        &e.layer_norm,
    )?;
    for (i, l) in model.layers.iter().enumerate() {
        let p = format!("{pre}encoder.layer.{i}");
        push_linear(&mut out, &format!("{p}.attention.self.query"), &l.query)?;
        push_linear(&mut out, &format!("{p}.attention.self.key"), &l.key)?;
        push_linear(&mut out, &format!("{p}.attention.self.value"), &l.value)?;
        push_linear(
            &mut out,
            &format!("{p}.attention.output.dense"),
            &l.attention_output,
        )?;
        push_ln(
            &mut out,
            &format!("{p}.attention.output.LayerNorm"),
            &l.attention_norm,
        )?;
        push_linear(
            &mut out,
            &format!("{p}.intermediate.dense"),
            &l.intermediate,
        )?;
        push_linear(&mut out, &format!("{p}.output.dense"), &l.output)?;
        push_ln(&mut out, &format!("{p}.output.LayerNorm"), &l.output_norm)?;
    }
    Ok(out)
}

/// Writes named f32 tensors as one safetensors file.
pub fn write_safetensors(path: &Path, tensors: &Named) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::Safetensors {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| {
        ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ModelError::config(path, e.to_string()))?;
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// Writes into a sibling temporary directory, fsyncs everything in it, then puts it in place
/// of `dir`, so a crash never leaves a half-written checkpoint under the final name, nor a
/// complete-looking one whose files never reached the disk (safetensors and `fs::write` do
/// not fsync).
fn write_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = dir.file_name().ok_or_else(|| {
        ModelError::InvalidInput(format!("{} is not a directory name", dir.display()))
    })?;
    let tmp: PathBuf = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let written = fill(&tmp)
        .and_then(|()| radit_util::fs::sync_tree(&tmp).map_err(ModelError::from))
        .and_then(|()| radit_util::fs::replace_dir(&tmp, dir).map_err(ModelError::from));
    if written.is_err() {
        // Best effort: a failed export leaves no partial directory behind; the original
        // error is the one worth reporting.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

fn write_tokenizer(dir: &Path, tokenizer: &TextTokenizer) -> Result<()> {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tokenizer.to_json_string()?).map_err(|e| ModelError::io(&path, e))?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &tokenizer.tokenizer_config_json(),
    )
}

impl Generator {
    /// Exports as a Hugging Face `LlamaForCausalLM` directory (f32 weights).
    pub fn export(&self, dir: &Path) -> Result<()> {
        let tensors = llama_tensors(&self.model)?;
        write_atomically(dir, |tmp| {
            write_safetensors(&tmp.join("model.safetensors"), &tensors)?;
            write_json(&tmp.join("config.json"), &self.model.config().to_hf_json())?;
            write_tokenizer(tmp, &self.tokenizer)
        })
    }
}

impl Encoder {
    /// Exports as a Hugging Face `BertModel` directory with sentence-transformers pooling files.
    pub fn export(&self, dir: &Path) -> Result<()> {
        let tensors = bert_tensors(&self.model)?;
        write_atomically(dir, |tmp| {
            write_safetensors(&tmp.join("model.safetensors"), &tensors)?;
            write_json(&tmp.join("config.json"), &self.model.config().to_hf_json())?;
            write_tokenizer(tmp, &self.tokenizer)?;
            let hidden = self.model.config().hidden_size;
            std::fs::create_dir_all(tmp.join("1_Pooling")).map_err(|e| ModelError::io(tmp, e))?;
            write_json(
                &tmp.join("1_Pooling/config.json"),
                &serde_json::json!({
                    "word_embedding_dimension": hidden,
                    "pooling_mode_cls_token": self.pooling == Pooling::Cls,
                    "pooling_mode_mean_tokens": self.pooling == Pooling::Mean,
                }),
            )?;
            let mut modules = vec![
                serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
                serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
            ];
            if self.normalize {
                modules.push(serde_json::json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
            }
            write_json(
                &tmp.join("modules.json"),
                &serde_json::Value::Array(modules),
            )?;
            write_json(
                &tmp.join("sentence_bert_config.json"),
                &serde_json::json!({"max_seq_length": self.max_length, "do_lower_case": false}),
            )
        })
    }
}

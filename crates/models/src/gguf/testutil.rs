//! Test helpers shared by the GGUF modules' tests: a minimal GGUF writer, sample metadata and
//! tensors, a tiny byte-level BPE vocabulary, and the path of the real SmolLM2 file when it has
//! been fetched.

use std::path::PathBuf;

use half::f16;

use super::GgufValue;
use GgufValue as V;

// ---- a minimal GGUF writer, enough to build files of every shape the reader accepts ----

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        V::U8(x) => out.push(*x),
        V::I8(x) => out.extend(x.to_le_bytes()),
        V::U16(x) => out.extend(x.to_le_bytes()),
        V::I16(x) => out.extend(x.to_le_bytes()),
        V::U32(x) => out.extend(x.to_le_bytes()),
        V::I32(x) => out.extend(x.to_le_bytes()),
        V::U64(x) => out.extend(x.to_le_bytes()),
        V::I64(x) => out.extend(x.to_le_bytes()),
        V::F32(x) => out.extend(x.to_le_bytes()),
        V::F64(x) => out.extend(x.to_le_bytes()),
        V::Bool(x) => out.push(u8::from(*x)),
        V::String(s) => put_str(out, s),
        V::Array(items) => {
            let elem = items.first().map_or(0, GgufValue::type_id);
            out.extend(elem.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

pub(super) struct TestTensor {
    name: &'static str,
    /// GGUF order: fastest-varying first.
    dims: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

fn pad(out: &mut Vec<u8>, alignment: usize) {
    out.resize(out.len().next_multiple_of(alignment), 0);
}

/// A GGUF file as llama.cpp writes it; returns the bytes and where the data section starts.
pub(super) fn build_gguf(
    kv: &[(&str, GgufValue)],
    tensors: &[TestTensor],
    alignment: usize,
) -> (Vec<u8>, usize) {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (key, value) in kv {
        put_str(&mut out, key);
        out.extend(value.type_id().to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut out, t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).next_multiple_of(alignment);
    }
    pad(&mut out, alignment);
    let data_start = out.len();
    for t in tensors {
        out.extend(&t.data);
        pad(&mut out, alignment);
    }
    (out, data_start)
}

pub(super) fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

pub(super) fn sample_metadata() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("general.architecture", V::String("llama".into())),
        ("general.alignment", V::U32(64)),
        ("t.u8", V::U8(200)),
        ("t.i8", V::I8(-5)),
        ("t.u16", V::U16(60000)),
        ("t.i16", V::I16(-30000)),
        ("t.u32", V::U32(4_000_000_000)),
        ("t.i32", V::I32(-2_000_000_000)),
        ("t.u64", V::U64(u64::MAX)),
        ("t.i64", V::I64(i64::MIN)),
        ("t.f32", V::F32(1e-5)),
        ("t.f64", V::F64(100000.5)),
        ("t.bool", V::Bool(true)),
        ("t.str", V::String("naïve 東京".into())),
        ("t.arr", V::Array(vec![V::I32(1), V::I32(-2), V::I32(3)])),
        ("t.empty", V::Array(vec![])),
        (
            "t.nested",
            V::Array(vec![
                V::Array(vec![V::String("a".into())]),
                V::Array(vec![V::String("b".into())]),
            ]),
        ),
    ]
}

pub(super) fn sample_tensors() -> Vec<TestTensor> {
    let f32_data: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes())
        .collect();
    // Q8_0: two rows of one block; d = 0.5 and 0.25, quants -16..16.
    let mut q8 = Vec::new();
    for d in [0.5f32, 0.25] {
        q8.extend(f16_bytes(d));
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    }
    let f16_data: Vec<u8> = [1.0f32, -2.5, 65504.0, 0.0]
        .iter()
        .flat_map(|&v| f16_bytes(v))
        .collect();
    vec![
        TestTensor {
            name: "a.f32",
            dims: vec![3, 2],
            ty: 0,
            data: f32_data,
        },
        TestTensor {
            name: "b.q8",
            dims: vec![32, 2],
            ty: 8,
            data: q8,
        },
        TestTensor {
            name: "c.f16",
            dims: vec![4],
            ty: 1,
            data: f16_data,
        },
    ]
}

// ---- a tiny byte-level BPE vocabulary, for the tokenizer tests and the fuzz test ----

pub(super) fn strings(items: &[&str]) -> GgufValue {
    V::Array(items.iter().map(|s| V::String(s.to_string())).collect())
}

pub(super) fn tiny_bpe_metadata() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String("smollm".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&[
                "<|endoftext|>",
                "a",
                "b",
                "c",
                "Ġ",
                "ab",
                "Ġa",
                "abc",
                "1",
                "2",
                "<think>",
            ]),
        ),
        (
            "tokenizer.ggml.token_type",
            V::Array([3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4].map(V::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", strings(&["a b", "Ġ a", "ab c"])),
        ("tokenizer.ggml.bos_token_id", V::U32(0)),
        ("tokenizer.ggml.eos_token_id", V::U32(0)),
    ]
}

// ---- the real SmolLM2 file, when fetched (scripts/fetch-assets.sh) ----

pub(super) fn smollm2_gguf() -> Option<PathBuf> {
    let root = std::env::var_os("RADIT_ASSETS")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("radit").join("assets"))
        })?;
    let path = root.join("SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} not found (run scripts/fetch-assets.sh)",
            path.display()
        );
        None
    }
}

// ---- a tiny but complete Llama GGUF, for the loader checks and the mutation test ----

/// A two-block Llama GGUF (hidden 32, 4 query and 2 key/value heads, feed-forward 64) with
/// the tiny BPE vocabulary: F32 norms, Q8_0 embedding and projections, so every part of the
/// reader, the config and the tokenizer is reached. Returns the bytes and where the data
/// section starts.
pub(crate) fn tiny_llama_gguf() -> (Vec<u8>, usize) {
    tiny_llama_gguf_with(&[])
}

/// [`tiny_llama_gguf`] with some metadata entries replaced (or added).
pub(crate) fn tiny_llama_gguf_with(overrides: &[(&'static str, GgufValue)]) -> (Vec<u8>, usize) {
    let (hidden, ffn, kv_out, vocab) = (32u64, 64u64, 16u64, 11u64);
    let mut kv = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.block_count", V::U32(2)),
        ("llama.embedding_length", V::U32(hidden as u32)),
        ("llama.feed_forward_length", V::U32(ffn as u32)),
        ("llama.attention.head_count", V::U32(4)),
        ("llama.attention.head_count_kv", V::U32(2)),
        ("llama.context_length", V::U32(64)),
        ("llama.rope.freq_base", V::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
    ];
    kv.extend(tiny_bpe_metadata());
    for (key, value) in overrides {
        match kv.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => kv.push((key, value.clone())),
        }
    }
    let f32_tensor = |name: &'static str, n: u64| TestTensor {
        name,
        dims: vec![n],
        ty: 0,
        data: (0..n)
            .flat_map(|i| (1.0 + i as f32 / 64.0).to_le_bytes())
            .collect(),
    };
    // Q8_0 rows of `cols` (a multiple of 32) elements: scale 1/64, quants cycling.
    let q8_tensor = |name: &'static str, cols: u64, rows: u64| {
        let mut data = Vec::new();
        for r in 0..rows * cols / 32 {
            data.extend(f16_bytes(1.0 / 64.0));
            data.extend((0..32).map(|i| ((i + r as i32) % 17 - 8) as i8 as u8));
        }
        TestTensor {
            name,
            dims: vec![cols, rows],
            ty: 8,
            data,
        }
    };
    let mut tensors = vec![
        q8_tensor("token_embd.weight", hidden, vocab),
        f32_tensor("output_norm.weight", hidden),
    ];
    for (norm, q, k, v, o, ffn_norm, gate, up, down) in [
        (
            "blk.0.attn_norm.weight",
            "blk.0.attn_q.weight",
            "blk.0.attn_k.weight",
            "blk.0.attn_v.weight",
            "blk.0.attn_output.weight",
            "blk.0.ffn_norm.weight",
            "blk.0.ffn_gate.weight",
            "blk.0.ffn_up.weight",
            "blk.0.ffn_down.weight",
        ),
        (
            "blk.1.attn_norm.weight",
            "blk.1.attn_q.weight",
            "blk.1.attn_k.weight",
            "blk.1.attn_v.weight",
            "blk.1.attn_output.weight",
            "blk.1.ffn_norm.weight",
            "blk.1.ffn_gate.weight",
            "blk.1.ffn_up.weight",
            "blk.1.ffn_down.weight",
        ),
    ] {
        tensors.extend([
            f32_tensor(norm, hidden),
            q8_tensor(q, hidden, hidden),
            q8_tensor(k, hidden, kv_out),
            q8_tensor(v, hidden, kv_out),
            q8_tensor(o, hidden, hidden),
            f32_tensor(ffn_norm, hidden),
            q8_tensor(gate, hidden, ffn),
            q8_tensor(up, hidden, ffn),
            q8_tensor(down, ffn, hidden),
        ]);
    }
    build_gguf(&kv, &tensors, 32)
}

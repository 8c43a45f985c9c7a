//! The Hugging Face tokenizer that a GGUF file's `tokenizer.ggml.*` metadata describes:
//! vocabulary ids, added tokens, the pre-tokenizer llama.cpp picks for `tokenizer.ggml.pre`,
//! and the `tokenizer.json` document for byte-level (GPT-2) or SentencePiece BPE, built the
//! way llama.cpp tokenizes so that ids match it.

use std::collections::HashMap;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::{quote, GgufError, GgufFile, GgufValue};

/// The special token ids named in `tokenizer.ggml.*_token_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokenIds {
    /// Beginning of sequence (`bos_token_id`).
    pub bos: Option<u32>,
    /// End of sequence (`eos_token_id`).
    pub eos: Option<u32>,
    /// Padding (`padding_token_id`).
    pub pad: Option<u32>,
    /// Unknown token (`unknown_token_id`).
    pub unk: Option<u32>,
    /// End of turn (`eot_token_id`), where a chat model has one distinct from EOS.
    pub eot: Option<u32>,
}

// Methods on `GgufFile` rather than free functions so that callers keep `file.tokenizer()`;
// as a child module this one sees the file's private fields and metadata helpers.
impl GgufFile {
    /// The BOS/EOS/padding/unknown/end-of-turn ids from `tokenizer.ggml.*_token_id`; an entry
    /// that is absent or not a u32 gives `None`.
    pub fn special_token_ids(&self) -> SpecialTokenIds {
        let id = |name: &str| {
            self.get(&format!("tokenizer.ggml.{name}_token_id"))
                .and_then(GgufValue::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        SpecialTokenIds {
            bos: id("bos"),
            eos: id("eos"),
            pad: id("padding"),
            unk: id("unknown"),
            eot: id("eot"),
        }
    }

    fn tokenizer_error(&self, msg: String) -> GgufError {
        GgufError::Tokenizer {
            path: self.path.clone(),
            msg,
        }
    }

    /// A Hugging Face `tokenizer.json` document equivalent to the tokenizer in the metadata,
    /// for `tokenizers::Tokenizer::from_str(&doc.to_string())`.
    ///
    /// Supports `tokenizer.ggml.model` "gpt2" (byte-level BPE; the pre-tokenizer follows
    /// `tokenizer.ggml.pre` as llama.cpp does for "smollm"/"starcoder"/"refact", the Llama 3
    /// family and "qwen2", and is GPT-2's for anything else) and "llama" (SentencePiece BPE
    /// with byte fallback; merges rebuilt from the scores when the file has none). Control
    /// and unknown tokens become special added tokens, user-defined ones plain added tokens.
    /// BOS/EOS are added by the post-processor when `tokenizer.ggml.add_bos_token` /
    /// `add_eos_token` say so (BOS defaults to on for "llama", as in llama.cpp).
    pub fn tokenizer_json(&self) -> Result<Value, GgufError> {
        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" && model != "llama" {
            return Err(self.tokenizer_error(format!(
                "tokenizer model {} is not supported (only \"gpt2\", byte-level BPE, \
                 and \"llama\", SentencePiece BPE)",
                quote(model)
            )));
        }
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        // Rebuilding merges looks up every split of every token, quadratic in its length.
        if let Some((i, t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > MAX_TOKEN_LEN)
        {
            return Err(self.tokenizer_error(format!(
                "tokenizer.ggml.tokens: token {i} is {} bytes long (at most {MAX_TOKEN_LEN})",
                t.len()
            )));
        }
        let ids = vocab_ids(&tokens);
        let types = self.token_types(tokens.len())?;
        let added = added_tokens(&tokens, &types);
        let unk = self
            .special_token_ids()
            .unk
            .and_then(|id| tokens.get(id as usize).copied());
        let flag = |key: &str| self.get(key).and_then(GgufValue::as_bool);
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
        let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false);
        let template = self.template_processing(&tokens, add_bos, add_eos)?;
        let vocab: Map<String, Value> = tokens
            .iter()
            .enumerate()
            .filter(|&(i, t)| ids.get(t) == Some(&(i as u32)))
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();

        let doc = if model == "gpt2" {
            let merges = self.file_merges(&ids)?.ok_or_else(|| {
                self.tokenizer_error("byte-level BPE needs tokenizer.ggml.merges".into())
            })?;
            let pre = self.get("tokenizer.ggml.pre").and_then(GgufValue::as_str);
            let byte_level_post = json!({
                "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true
            });
            let post = match template {
                Some(t) => json!({"type": "Sequence", "processors": [byte_level_post, t]}),
                None => byte_level_post,
            };
            json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": byte_level_pre_tokenizer(pre),
                "post_processor": post,
                "decoder": {
                    "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
                },
                "model": {
                    "type": "BPE",
                    "dropout": null,
                    "unk_token": unk,
                    "continuing_subword_prefix": null,
                    "end_of_word_suffix": null,
                    "fuse_unk": false,
                    "byte_fallback": false,
                    // llama.cpp emits a pre-token found whole in the vocabulary without
                    // merging for the Llama 3 family, as Meta's tokenizer.json does.
                    "ignore_merges": pre.is_some_and(is_llama3_pre),
                    "vocab": vocab,
                    "merges": merges,
                },
            })
        } else {
            let merges = match self.file_merges(&ids)? {
                Some(m) => m,
                None => self.merges_from_scores(&tokens, &ids)?,
            };
            let add_space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
            let replace_space =
                json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
            // A normalizer, not a Metaspace pre-tokenizer: it runs on every stretch of text
            // between special tokens, and llama.cpp likewise prefixes a space after each one.
            let normalizer = if add_space_prefix {
                json!({"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "\u{2581}"}, replace_space
                ]})
            } else {
                replace_space
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": added,
                "normalizer": normalizer,
                "pre_tokenizer": null,
                "post_processor": template,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {
                    "type": "BPE",
                    "dropout": null,
                    "unk_token": unk.or_else(|| ids.contains_key("<unk>").then_some("<unk>")),
                    "continuing_subword_prefix": null,
                    "end_of_word_suffix": null,
                    "fuse_unk": true,
                    "byte_fallback": true,
                    "ignore_merges": false,
                    "vocab": vocab,
                    "merges": merges,
                },
            })
        };
        Ok(doc)
    }

    /// The tokenizer from [`GgufFile::tokenizer_json`], ready to use.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, GgufError> {
        let doc = self.tokenizer_json()?.to_string();
        tokenizers::Tokenizer::from_str(&doc).map_err(|e| {
            let msg = e.to_string();
            let cut: String = msg.chars().take(MAX_QUOTED_ERROR).collect();
            let more = if cut.len() < msg.len() { "..." } else { "" };
            self.tokenizer_error(format!("tokenizers rejected the document: {cut}{more}"))
        })
    }

    /// `tokenizer.ggml.token_type`, or all "normal" when absent.
    fn token_types(&self, n_tokens: usize) -> Result<Vec<i64>, GgufError> {
        const KEY: &str = "tokenizer.ggml.token_type";
        if self.get(KEY).is_none() {
            return Ok(vec![TOKEN_NORMAL; n_tokens]);
        }
        let items = self.get_array(KEY)?;
        if items.len() != n_tokens {
            return Err(self.tokenizer_error(format!(
                "{KEY} has {} entries for {n_tokens} tokens",
                items.len()
            )));
        }
        items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| self.wrong_type(KEY, "an array of integers", v))
            })
            .collect()
    }

    /// Pairs from `tokenizer.ggml.merges`, each checked against the vocabulary so that a bad
    /// file fails here, naming the merge, rather than inside `tokenizers`.
    fn file_merges(&self, ids: &HashMap<&str, u32>) -> Result<Option<Vec<Value>>, GgufError> {
        const KEY: &str = "tokenizer.ggml.merges";
        if self.get(KEY).is_none() {
            return Ok(None);
        }
        let merges = self.get_str_array(KEY)?;
        let mut out = Vec::with_capacity(merges.len());
        for (i, merge) in merges.iter().enumerate() {
            // As llama.cpp: the separator is the first space after the first character, so
            // a left piece that is itself a space still parses.
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let split = merge
                .get(first..)
                .and_then(|rest| rest.find(' '))
                .map(|at| first + at);
            let pair = split.and_then(|at| Some((merge.get(..at)?, merge.get(at + 1..)?)));
            let Some((a, b)) = pair else {
                return Err(
                    self.tokenizer_error(format!("merge {i} {} is not two tokens", quote(merge)))
                );
            };
            if !ids.contains_key(a)
                || !ids.contains_key(b)
                || !ids.contains_key(&*format!("{a}{b}"))
            {
                return Err(self.tokenizer_error(format!(
                    "merge {i} {} uses or makes a token missing from the vocabulary",
                    quote(merge)
                )));
            }
            out.push(json!([a, b]));
        }
        Ok(Some(out))
    }

    /// SentencePiece BPE files carry scores, not merges. Every split of a token into two
    /// vocabulary pieces is a merge, ranked by the token's score, as transformers'
    /// `generate_merges` does (ties: longer left piece, then longer right piece, then token
    /// order).
    fn merges_from_scores(
        &self,
        tokens: &[&str],
        ids: &HashMap<&str, u32>,
    ) -> Result<Vec<Value>, GgufError> {
        const KEY: &str = "tokenizer.ggml.scores";
        let scores = self.get_array(KEY)?;
        if scores.len() != tokens.len() {
            return Err(self.tokenizer_error(format!(
                "{KEY} has {} entries for {} tokens",
                scores.len(),
                tokens.len()
            )));
        }
        let mut merges: Vec<(&str, &str, f64)> = Vec::new();
        for (token, score) in tokens.iter().zip(scores) {
            let score = score
                .as_f64()
                .ok_or_else(|| self.wrong_type(KEY, "an array of numbers", score))?;
            let mut local: Vec<(&str, &str, u32, u32)> = token
                .char_indices()
                .skip(1)
                .filter_map(|(at, _)| {
                    let (l, r) = token.split_at(at);
                    Some((l, r, *ids.get(l)?, *ids.get(r)?))
                })
                .collect();
            local.sort_by_key(|&(_, _, il, ir)| (il, ir));
            merges.extend(local.into_iter().map(|(l, r, _, _)| (l, r, score)));
        }
        merges.sort_by(|x, y| {
            y.2.total_cmp(&x.2)
                .then_with(|| y.0.chars().count().cmp(&x.0.chars().count()))
                .then_with(|| y.1.chars().count().cmp(&x.1.chars().count()))
        });
        Ok(merges.into_iter().map(|(l, r, _)| json!([l, r])).collect())
    }

    /// A TemplateProcessing that adds BOS and/or EOS, or `None` when neither is wanted.
    fn template_processing(
        &self,
        tokens: &[&str],
        add_bos: bool,
        add_eos: bool,
    ) -> Result<Option<Value>, GgufError> {
        let special = self.special_token_ids();
        let mut specials = Map::new();
        let mut piece =
            |wanted: bool, id: Option<u32>, what: &str| -> Result<Option<Value>, GgufError> {
                if !wanted {
                    return Ok(None);
                }
                let token = id.and_then(|id| tokens.get(id as usize).map(|t| (id, *t)));
                let Some((id, token)) = token else {
                    return Err(self.tokenizer_error(format!(
                    "the file asks to add {what} but has no valid tokenizer.ggml.{what}_token_id"
                )));
                };
                specials.insert(
                    token.to_string(),
                    json!({"id": token, "ids": [id], "tokens": [token]}),
                );
                Ok(Some(json!({"SpecialToken": {"id": token, "type_id": 0}})))
            };
        let bos = piece(add_bos, special.bos, "bos")?;
        let eos = piece(add_eos, special.eos, "eos")?;
        if bos.is_none() && eos.is_none() {
            return Ok(None);
        }
        let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let mut single = Vec::new();
        single.extend(bos.clone());
        single.push(seq("A", 0));
        single.extend(eos.clone());
        let mut pair = single.clone();
        pair.extend(bos);
        pair.push(seq("B", 1));
        pair.extend(eos);
        Ok(Some(json!({
            "type": "TemplateProcessing",
            "single": single,
            "pair": pair,
            "special_tokens": specials,
        })))
    }
}

/// Longest token accepted in `tokenizer.ggml.tokens` (real vocabularies stay under a few
/// hundred bytes).
const MAX_TOKEN_LEN: usize = 1 << 16;

/// Longest message of `tokenizers` quoted in an error (it may quote tokens).
const MAX_QUOTED_ERROR: usize = 512;

/// llama.cpp's `llama_token_type` values that matter here.
const TOKEN_NORMAL: i64 = 1;
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Token → id, keeping the first id of a duplicated token (a JSON vocabulary can hold only
/// one).
fn vocab_ids<'a>(tokens: &[&'a str]) -> HashMap<&'a str, u32> {
    let mut ids = HashMap::with_capacity(tokens.len());
    for (i, &t) in tokens.iter().enumerate() {
        ids.entry(t).or_insert(i as u32);
    }
    ids
}

/// Tokens llama.cpp matches whole in raw text before tokenizing: control and unknown tokens
/// (special) and user-defined ones (not special).
fn added_tokens(tokens: &[&str], types: &[i64]) -> Vec<Value> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|&(_, (_, &ty))| matches!(ty, TOKEN_UNKNOWN | TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(id, (content, &ty))| {
            json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": ty != TOKEN_USER_DEFINED,
            })
        })
        .collect()
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn is_llama3_pre(pre: &str) -> bool {
    matches!(
        pre,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe"
    )
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` value, in tokenizers' terms.
fn byte_level_pre_tokenizer(pre: Option<&str>) -> Value {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    match pre {
        // llama.cpp splits off every digit ("\p{N}") before GPT-2's regex; Digits with
        // individual_digits is the same, and is what SmolLM2's own tokenizer.json uses.
        Some("smollm" | "starcoder" | "refact") => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        Some(p) if is_llama3_pre(p) => split(LLAMA3_SPLIT),
        Some("qwen2" | "deepseek-r1-qwen") => split(QWEN2_SPLIT),
        _ => byte_level(true),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::gguf::testutil::{build_gguf, smollm2_gguf, strings, tiny_bpe_metadata, write_temp};
    use GgufValue as V;

    fn file_with(dir: &tempfile::TempDir, kv: &[(&str, GgufValue)]) -> GgufFile {
        let (bytes, _) = build_gguf(kv, &[], 32);
        GgufFile::open(&write_temp(dir, "tok.gguf", &bytes)).expect("open")
    }

    fn ids(tok: &tokenizers::Tokenizer, text: &str, special: bool) -> Vec<u32> {
        tok.encode(text, special)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn gguf_tiny_byte_level_tokenizer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file_with(&dir, &tiny_bpe_metadata());
        let tok = f.tokenizer().expect("tokenizer");
        // "Ġabc": a+b merges first (rank 0), then ab+c; "Ġ a" never gets a chance.
        assert_eq!(ids(&tok, "ab abc", false), [5, 4, 7]);
        assert_eq!(
            ids(&tok, "<|endoftext|>a<think>12", false),
            [0, 1, 10, 8, 9]
        );
        assert_eq!(tok.decode(&[5, 4, 7], false).expect("decode"), "ab abc");
        assert_eq!(tok.decode(&[0, 5], true).expect("decode"), "ab");
        let specials = f.special_token_ids();
        assert_eq!(
            (specials.bos, specials.eos, specials.pad),
            (Some(0), Some(0), None)
        );

        let mut kv = tiny_bpe_metadata();
        kv.push(("tokenizer.ggml.add_bos_token", V::Bool(true)));
        let tok = file_with(&dir, &kv).tokenizer().expect("tokenizer");
        assert_eq!(ids(&tok, "ab", true), [0, 5]);
        assert_eq!(ids(&tok, "ab", false), [5]);

        let mut kv = tiny_bpe_metadata();
        kv[0].1 = V::String("bert".into());
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"bert\"") && msg.contains("not supported"),
            "{msg}"
        );

        let mut kv = tiny_bpe_metadata();
        kv[4].1 = strings(&["a b", "b q"]);
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"b q\""), "{msg}");

        let mut kv = tiny_bpe_metadata();
        kv[3].1 = V::Array(vec![V::I32(1)]);
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("token_type"), "{msg}");
    }

    #[test]
    fn gguf_tiny_sentencepiece_tokenizer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = [
            "<unk>", "<s>", "</s>", "<0x63>", "▁", "a", "b", "▁a", "ab", "▁ab", "▁b",
        ];
        let kv = vec![
            ("tokenizer.ggml.model", V::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            (
                "tokenizer.ggml.scores",
                V::Array(
                    [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0, -7.0]
                        .map(V::F32)
                        .to_vec(),
                ),
            ),
            (
                "tokenizer.ggml.token_type",
                V::Array([2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 1].map(V::I32).to_vec()),
            ),
            ("tokenizer.ggml.bos_token_id", V::U32(1)),
            ("tokenizer.ggml.eos_token_id", V::U32(2)),
            ("tokenizer.ggml.unknown_token_id", V::U32(0)),
        ];
        let f = file_with(&dir, &kv);
        let doc = f.tokenizer_json().expect("json");
        // "ab" (-4) outranks "▁a" (-5), so "▁ab" comes from "▁" + "ab".
        assert_eq!(doc["model"]["merges"][0], json!(["a", "b"]));
        let tok = f.tokenizer().expect("tokenizer");
        // BOS is on by default for SentencePiece files, as in llama.cpp.
        assert_eq!(ids(&tok, "ab b", true), [1, 9, 10]);
        assert_eq!(ids(&tok, "ab b", false), [9, 10]);
        // Unknown characters fall back to byte tokens where present, else <unk>.
        assert_eq!(ids(&tok, "ac", false), [7, 3]);
        assert_eq!(ids(&tok, "a</s>b", false), [7, 2, 10]);
        assert_eq!(tok.decode(&[1, 9, 10, 3], true).expect("decode"), "ab bc");
    }

    /// A SentencePiece BPE vocabulary written by gguf-py the way llama.cpp's converter writes
    /// Llama 2's, against sentencepiece's own ids.
    #[test]
    fn gguf_sentencepiece_tokenizer_matches_sentencepiece() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm_tiny.gguf");
        let f = GgufFile::open(&path).expect("open");
        assert!(f.tensors.is_empty());
        let tok = f.tokenizer().expect("tokenizer");
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/spm_tiny_ids.json"))
                .expect("fixture");
        for case in fixture["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
            assert_eq!(ids(&tok, text, false), want, "{text:?}");
            let mut with_bos = vec![1];
            with_bos.extend(&want);
            assert_eq!(ids(&tok, text, true), with_bos, "{text:?} with BOS");
            assert_eq!(tok.decode(&with_bos, true).expect("decode"), text);
        }
    }

    // ---- the real SmolLM2 file, when fetched (scripts/fetch-assets.sh) ----

    #[test]
    fn gguf_smollm2_tokenizer_matches_transformers() {
        let Some(path) = smollm2_gguf() else { return };
        let f = GgufFile::open(&path).expect("open");
        let tok = f.tokenizer().expect("tokenizer");
        assert_eq!(tok.get_vocab_size(true), 49152);
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/smollm2_tokenizer_ids.json"
        ))
        .expect("fixture");
        assert_eq!(fixture["tokenizer_ggml_pre"], "smollm");
        for case in fixture["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
            let want_special: Vec<u32> =
                serde_json::from_value(case["ids_with_special_tokens"].clone()).expect("ids");
            assert_eq!(ids(&tok, text, false), want, "{text:?}");
            assert_eq!(
                ids(&tok, text, true),
                want_special,
                "{text:?} with special tokens"
            );
            assert_eq!(tok.decode(&want, false).expect("decode"), text);
        }
        // Where transformers is wrong: its GGUF loader ignores tokenizer.ggml.pre "smollm" and
        // keeps " ٣" (Arabic-Indic three) together as "ĠÙ" + "£", while llama.cpp's \p{N} split
        // and SmolLM2's own tokenizer.json (Digits) cut off every digit first.
        assert_eq!(ids(&tok, " \u{663}", false), [216, 164, 113]);
    }
}

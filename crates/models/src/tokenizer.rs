//! Tokenizer wrapper: batch encoding with padding side and truncation that keeps special
//! tokens, decoding, special/stop tokens, and chat templates rendered with minijinja.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::utils::truncation::TruncationDirection;
use tokenizers::{PostProcessor, Tokenizer};

use crate::batch::{PaddingSide, TokenBatch};
use crate::error::{ModelError, Result};

/// Which end of a too-long text is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruncationSide {
    /// Keep the beginning (drop the end).
    #[default]
    Right,
    /// Keep the end (drop the beginning).
    Left,
}

/// How [`TextTokenizer::encode_batch`] shapes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add the model's special tokens (`[CLS]`/`[SEP]`, BOS, ...).
    pub add_special_tokens: bool,
    /// Longest row in tokens, special tokens included; longer texts are truncated.
    pub max_length: Option<usize>,
    /// Which end truncation removes.
    pub truncation: TruncationSide,
    /// Which end padding goes to.
    pub padding: PaddingSide,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            add_special_tokens: true,
            max_length: None,
            truncation: TruncationSide::Right,
            padding: PaddingSide::Right,
        }
    }
}

/// One turn of a conversation for a chat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A Hugging Face tokenizer plus what `tokenizer_config.json` adds to it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_id: u32,
    stop_ids: Vec<u32>,
    model_max_length: Option<usize>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("pad_id", &self.pad_id)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> ModelError {
    // The tokenizers crate's and serde's messages quote the offending value, which in a
    // corrupt file can be any length.
    let e = e.to_string();
    let e = match e.char_indices().nth(300) {
        None => e,
        Some((cut, _)) => format!("{}... ({} bytes)", &e[..cut], e.len()),
    };
    ModelError::Tokenizer(format!("{context}: {e}"))
}

/// Checks what the tokenizers crate trusts in a `TemplateProcessing` post-processor (also
/// inside a `Sequence`): it indexes `special_tokens` by every id its templates name, and pairs
/// each token's `ids` with its `tokens`, without checking either at load, so a corrupt
/// document loads and then panics on the first encode (found by radit-fuzz).
fn check_post_processor(p: &serde_json::Value) -> std::result::Result<(), String> {
    match p.get("type").and_then(|t| t.as_str()) {
        Some("Sequence") => {
            let inner = p.get("processors").and_then(|v| v.as_array());
            for q in inner.into_iter().flatten() {
                check_post_processor(q)?;
            }
        }
        Some("TemplateProcessing") => {
            let known = p.get("special_tokens").and_then(|v| v.as_object());
            for (name, token) in known.into_iter().flatten() {
                let len = |k: &str| token.get(k).and_then(|v| v.as_array()).map(Vec::len);
                if len("ids") != len("tokens") {
                    return Err(format!(
                        "post_processor special token {:?}: `ids` and `tokens` differ in length",
                        clip_str(name)
                    ));
                }
            }
            for key in ["single", "pair"] {
                for piece in p.get(key).and_then(|v| v.as_array()).into_iter().flatten() {
                    // A piece is `{"SpecialToken": {"id": ..}}` or a string `ID[:TYPE]`
                    // (`$A`, `$B` are the sequences).
                    let id = match piece {
                        serde_json::Value::String(s) if !s.starts_with('$') => s.split(':').next(),
                        _ => piece
                            .get("SpecialToken")
                            .and_then(|t| t.get("id"))
                            .and_then(|i| i.as_str()),
                    };
                    if let Some(id) = id {
                        if !known.is_some_and(|k| k.contains_key(id)) {
                            return Err(format!(
                                "post_processor `{key}` template names special token {:?}, \
                                 which its special_tokens does not define",
                                clip_str(id)
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `s` cut to 100 characters for a message.
fn clip_str(s: &str) -> String {
    match s.char_indices().nth(100) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

/// A special token in `tokenizer_config.json` is a string or `{"content": ...}`.
fn special_token(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl TextTokenizer {
    /// Wraps a parsed tokenizer. Fixed padding and truncation baked into `tokenizer.json`
    /// (MiniLM ships both at 128) are removed: this wrapper controls both per call.
    pub fn new(mut inner: Tokenizer) -> Result<Self> {
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| tok_err("disabling truncation", e))?;
        let pad_id = ["<pad>", "[PAD]", "<|endoftext|>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .unwrap_or(0);
        Ok(Self {
            inner,
            chat_template: None,
            bos_token: None,
            eos_token: None,
            pad_id,
            stop_ids: Vec::new(),
            model_max_length: None,
        })
    }

    /// Reads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let context = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        // Parsed as JSON first: the tokenizers crate's own reader panics on a syntax error
        // inside the `decoder` object (an `expect` in its deserializer, found by radit-fuzz);
        // re-read from a valid document it has no syntax error left to hit.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| tok_err(&context, e))?;
        Self::from_value(&context, &value)
    }

    /// Parses a `tokenizer.json` document.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        Self::from_value("tokenizer.json", value)
    }

    fn from_value(context: &str, value: &serde_json::Value) -> Result<Self> {
        if let Some(p) = value.get("post_processor") {
            check_post_processor(p).map_err(|e| tok_err(context, e))?;
        }
        let inner: Tokenizer = value.to_string().parse().map_err(|e| tok_err(context, e))?;
        Self::new(inner)
    }

    /// Loads `tokenizer.json` from a model directory, with `tokenizer_config.json` (chat
    /// template, special tokens, maximum length) when present.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut tok = Self::from_file(&dir.join("tokenizer.json"))?;
        let config_path = dir.join("tokenizer_config.json");
        if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| ModelError::io(&config_path, e))?;
            let config: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| tok_err(&config_path.display().to_string(), e))?;
            tok.apply_tokenizer_config(&config);
        }
        Ok(tok)
    }

    /// Takes the chat template, special tokens and maximum length from a
    /// `tokenizer_config.json` document.
    pub fn apply_tokenizer_config(&mut self, config: &serde_json::Value) {
        if let Some(t) = config.get("chat_template").and_then(|t| t.as_str()) {
            self.chat_template = Some(t.to_owned());
        }
        self.bos_token = special_token(config.get("bos_token")).or(self.bos_token.take());
        self.eos_token = special_token(config.get("eos_token")).or(self.eos_token.take());
        if let Some(pad) =
            special_token(config.get("pad_token")).and_then(|p| self.inner.token_to_id(&p))
        {
            self.pad_id = pad;
        }
        if let Some(eos) = self
            .eos_token
            .as_deref()
            .and_then(|e| self.inner.token_to_id(e))
        {
            if !self.stop_ids.contains(&eos) {
                self.stop_ids.push(eos);
            }
        }
        // transformers writes a huge sentinel when there is no limit.
        if let Some(max) = config.get("model_max_length").and_then(|m| m.as_u64()) {
            if max < 1_000_000 {
                self.model_max_length = Some(max as usize);
            }
        }
    }

    /// Sets the chat template (Jinja source).
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }

    /// Sets the BOS/EOS token strings the chat template sees, and adds EOS to the stop set.
    pub fn set_special_tokens(&mut self, bos: Option<String>, eos: Option<String>) {
        self.bos_token = bos;
        self.eos_token = eos;
        if let Some(eos) = self
            .eos_token
            .as_deref()
            .and_then(|e| self.inner.token_to_id(e))
        {
            if !self.stop_ids.contains(&eos) {
                self.stop_ids.push(eos);
            }
        }
    }

    /// Adds a token id that ends generation.
    pub fn add_stop_id(&mut self, id: u32) {
        if !self.stop_ids.contains(&id) {
            self.stop_ids.push(id);
        }
    }

    /// Sets the padding id.
    pub fn set_pad_id(&mut self, id: u32) {
        self.pad_id = id;
    }

    /// Tokens that end generation (EOS and any extra stop tokens).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The model's maximum length from `tokenizer_config.json`, if it gives one.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The BOS token string, if known.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS token string, if known.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Fails unless every token id fits the model's embedding matrix.
    pub fn check_model_vocab(&self, embedding_rows: usize) -> Result<()> {
        let n = self.vocab_size();
        if n > embedding_rows {
            return Err(ModelError::Tokenizer(format!(
                "the tokenizer has {n} tokens but the model's embedding matrix has {embedding_rows} rows; \
                 this tokenizer does not belong to this model"
            )));
        }
        Ok(())
    }

    /// Encodes one text, truncating to `max_length` while keeping special tokens.
    pub fn encode_with(&self, text: &str, options: &EncodeOptions) -> Result<Vec<u32>> {
        let mut encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err("encode", e))?;
        if let Some(max) = options.max_length.or(self.model_max_length) {
            let added = if options.add_special_tokens {
                self.inner
                    .get_post_processor()
                    .map_or(0, |p| p.added_tokens(false))
            } else {
                0
            };
            let direction = match options.truncation {
                TruncationSide::Right => TruncationDirection::Right,
                TruncationSide::Left => TruncationDirection::Left,
            };
            encoding.truncate(max.saturating_sub(added), 0, direction);
        }
        let encoding = self
            .inner
            .post_process(encoding, None, options.add_special_tokens)
            .map_err(|e| tok_err("post-process", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes one text with special tokens and no length limit beyond the model's.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, &EncodeOptions::default())
    }

    /// Encodes texts into one padded batch.
    pub fn encode_batch(&self, texts: &[&str], options: &EncodeOptions) -> Result<TokenBatch> {
        let rows = texts
            .iter()
            .map(|t| self.encode_with(t, options))
            .collect::<Result<Vec<_>>>()?;
        TokenBatch::from_rows(&rows, self.pad_id, options.padding)
    }

    /// Decodes ids to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err("decode", e))
    }

    /// Renders a conversation with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| ModelError::ChatTemplate("this model has no chat template".into()))?;
        render_chat_template(
            template,
            messages,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or(""),
            self.eos_token.as_deref().unwrap_or(""),
        )
    }

    /// The `tokenizer.json` document, for export.
    pub fn to_json_string(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| tok_err("serialize", e))
    }

    /// The `tokenizer_config.json` document, for export.
    pub fn tokenizer_config_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false });
        if let Some(t) = &self.chat_template {
            v["chat_template"] = t.clone().into();
        }
        if let Some(t) = &self.bos_token {
            v["bos_token"] = t.clone().into();
        }
        if let Some(t) = &self.eos_token {
            v["eos_token"] = t.clone().into();
        }
        if let Some(p) = self.inner.id_to_token(self.pad_id) {
            v["pad_token"] = p.into();
        }
        if let Some(m) = self.model_max_length {
            v["model_max_length"] = m.into();
        }
        v
    }
}

/// Renders a Hugging Face chat template (Jinja) with the variables transformers provides.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // Templates call Python string methods (`.strip()`, `.startswith()`, ...).
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| ModelError::ChatTemplate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn a_corrupt_tokenizer_json_is_an_error_not_a_panic() {
        // Found by radit-fuzz: a syntax error inside `decoder` panicked in the tokenizers
        // crate (`expect("Helper")`) instead of failing the load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        for text in [
            r#"{"version": "1.0", "decoder": {"type": "ByteLevel", "#.to_string(),
            r#"{"version": "1.0", "decoder": {"type": "ByteLevel", 1: 2}}"#.to_string(),
            format!(r#"{{"version": "1.0", "decoder": {}"#, "[".repeat(500)),
        ] {
            std::fs::write(&path, &text).unwrap();
            let e = std::panic::catch_unwind(|| TextTokenizer::from_file(&path))
                .expect("no panic")
                .unwrap_err();
            assert!(e.to_string().contains("tokenizer.json"), "{e}");
        }
    }

    #[test]
    fn a_template_naming_an_undefined_special_token_is_refused_at_load() {
        // Found by radit-fuzz: the tokenizers crate loaded it and panicked on encode.
        let doc = |special: &str, ids: &str| -> serde_json::Value {
            serde_json::from_str(&format!(
                r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": null, "pre_tokenizer": null, "decoder": null,
                "model": {{"type": "WordLevel", "vocab": {{"a": 0, "<s>": 1, "[UNK]": 2}}, "unk_token": "[UNK]"}},
                "post_processor": {{"type": "Sequence", "processors": [{{"type": "TemplateProcessing",
                  "single": [{{"SpecialToken": {{"id": "<s>", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}],
                  "pair": [{{"SpecialToken": {{"id": "<s>", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"Sequence": {{"id": "B", "type_id": 1}}}}],
                  "special_tokens": {{"{special}": {{"id": "{special}", "ids": {ids}, "tokens": ["<s>"]}}}}}}]}}}}"#
            ))
            .unwrap()
        };
        let tok = TextTokenizer::from_json(&doc("<s>", "[1]")).unwrap();
        assert_eq!(
            tok.encode_with(
                "a",
                &EncodeOptions {
                    add_special_tokens: true,
                    ..Default::default()
                }
            )
            .unwrap(),
            [1, 0]
        );
        for (special, ids) in [("<3>", "[1]"), ("<s>", "[1, 2]")] {
            let e = TextTokenizer::from_json(&doc(special, ids)).unwrap_err();
            assert!(e.to_string().contains("special token"), "{e}");
        }
    }

    #[test]
    fn chatml_template_renders_like_transformers() {
        let out = render_chat_template(
            CHATML,
            &[ChatMessage::new("user", "Hi there")],
            true,
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn template_python_methods_and_exceptions_work() {
        let t = "{% if messages[0].role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}{{ messages[0].content.strip() }}";
        assert_eq!(
            render_chat_template(t, &[ChatMessage::new("user", "  x  ")], false, "", "").unwrap(),
            "x"
        );
        let err =
            render_chat_template(t, &[ChatMessage::new("bad", "x")], false, "", "").unwrap_err();
        assert!(err.to_string().contains("no bad roles"), "{err}");
    }

    #[test]
    fn broken_template_is_an_error() {
        let err = render_chat_template("{% for %}", &[], false, "", "").unwrap_err();
        assert!(matches!(err, ModelError::ChatTemplate(_)));
    }
}

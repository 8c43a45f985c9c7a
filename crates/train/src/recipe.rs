//! Recipes: one TOML file, deserialized into the caller's structs, with `a.b.c=value`
//! overrides from the command line.
//!
//! The caller's structs carry `#[serde(deny_unknown_fields)]`, so a typo is an error rather
//! than a silently ignored key. This module turns serde's terse messages into ones that name
//! the full dotted key, the file, and the nearest valid key. (`#[serde(flatten)]` disables
//! `deny_unknown_fields` in serde, so recipe structs should avoid it.)

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

/// Why a recipe could not be loaded, overridden or saved.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The recipe file could not be read or the resolved recipe not written.
    #[error("cannot {action} recipe {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than any recipe ([`MAX_RECIPE_BYTES`]).
    #[error("recipe {} is {bytes} bytes; a recipe is at most {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// [`MAX_RECIPE_BYTES`].
        max: u64,
    },
    /// The file is not valid TOML.
    #[error("{file} is not valid TOML: {message}")]
    Syntax {
        /// The file (as given to the loader).
        file: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A key the recipe structs do not have (typo or stale key).
    #[error("{}", unknown_key_message(.key, .file, .suggestion.as_deref(), .expected, .from_override.as_deref()))]
    UnknownKey {
        /// Full dotted path of the offending key, e.g. `stages.lm_ft.lrr`.
        key: String,
        /// The file.
        file: String,
        /// The nearest valid key at that level, when one is close enough.
        suggestion: Option<String>,
        /// Every key valid at that level.
        expected: Vec<String>,
        /// The `--set` override that introduced the key, when it came from one.
        from_override: Option<String>,
    },
    /// A value of the wrong type, a missing required key, or an unknown enum variant.
    #[error("invalid recipe {file}: at `{key}`: {message}{}", override_note(.from_override.as_deref()))]
    Invalid {
        /// Full dotted path of the offending key (`<root>` for the top level).
        key: String,
        /// The file.
        file: String,
        /// What is wrong, e.g. "invalid type: string \"x\", expected f64".
        message: String,
        /// The `--set` override that set this key, when one did.
        from_override: Option<String>,
    },
    /// A `--set` argument that is not `dotted.key=value`, or that descends into a non-table.
    #[error("bad override `{spec}`: {reason}")]
    BadOverride {
        /// The override as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resolved recipe could not be serialized to TOML.
    #[error("cannot serialize the resolved recipe: {0}")]
    Serialize(String),
}

fn override_note(spec: Option<&str>) -> String {
    spec.map(|s| format!(" (set by override `{s}`)"))
        .unwrap_or_default()
}

fn unknown_key_message(
    key: &str,
    file: &str,
    suggestion: Option<&str>,
    expected: &[String],
    from_override: Option<&str>,
) -> String {
    let mut msg = format!("unknown key `{key}` in {file}");
    match suggestion {
        Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
        // No key is close: name every key valid at that level instead.
        None if !expected.is_empty() => {
            let keys: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
            msg.push_str(&format!(" (valid keys there: {})", keys.join(", ")));
        }
        None => {}
    }
    msg.push_str(&override_note(from_override));
    msg
}

/// Largest recipe file [`load_recipe`] reads: the shipped recipes are 2-3 KB.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;

/// Loads the recipe at `path`, applies `overrides` (each `dotted.key=value`) in order, and
/// deserializes the result into `T`.
///
/// Returns the typed recipe and the resolved TOML document (file plus overrides), which is
/// what [`save_resolved`] writes beside each checkpoint. Keys that `T` fills from
/// `#[serde(default)]` are not in that document; use [`to_value`] on `T` for a fully
/// explicit one (it pins defaults, so a later change of a default cannot alter a resume).
pub fn load_recipe<T: DeserializeOwned>(
    path: &Path,
    overrides: &[String],
) -> Result<(T, Value), RecipeError> {
    let io = |source| RecipeError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    // toml's lexer holds every token at once (~27 bytes per input byte of brackets, found by
    // radit-fuzz): a corrupt multi-MB file would take GBs, so the size is checked first.
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_RECIPE_BYTES {
        return Err(RecipeError::TooLarge {
            path: path.to_path_buf(),
            bytes,
            max: MAX_RECIPE_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    // As the user typed it, so the message points at the file they meant.
    let file = path.display().to_string();
    parse_recipe(&text, &file, overrides)
}

/// Like [`load_recipe`], from recipe text; `file` names the source in error messages.
pub fn parse_recipe<T: DeserializeOwned>(
    text: &str,
    file: &str,
    overrides: &[String],
) -> Result<(T, Value), RecipeError> {
    let mut root: Table = text
        .parse()
        .map_err(|e: toml::de::Error| RecipeError::Syntax {
            file: file.to_string(),
            message: clip_lines(e.to_string().trim_end()),
        })?;
    let mut applied: Vec<(Vec<String>, String)> = Vec::with_capacity(overrides.len());
    for spec in overrides {
        let path = apply_override(&mut root, spec)?;
        applied.push((path, spec.clone()));
    }
    let resolved = Value::Table(root);
    let typed = deserialize_value(&resolved, file, &applied)?;
    Ok((typed, resolved))
}

/// Applies one `dotted.key=value` override to `root`, creating intermediate tables, and
/// returns the key's path segments.
///
/// The value is parsed as a TOML literal (number, bool, string, array, inline table) and
/// falls back to a bare string, so `--set model.name=foo` needs no quotes. Quoted key
/// segments (`a."b.c"=1`) follow TOML's rules.
pub fn apply_override(root: &mut Table, spec: &str) -> Result<Vec<String>, RecipeError> {
    let bad = |reason: &str| RecipeError::BadOverride {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected `dotted.key=value`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    let path = parse_key_path(key).ok_or_else(|| bad("the key is not a valid TOML dotted key"))?;
    let value = parse_override_value(raw.trim());

    let (last, parents) = path.split_last().ok_or_else(|| bad("the key is empty"))?;
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            other => {
                return Err(bad(&format!(
                    "`{}` is a {}, not a table",
                    path[..=i].join("."),
                    other.type_str()
                )))
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(path)
}

/// Parses a dotted key with TOML's own grammar (bare and quoted segments).
fn parse_key_path(key: &str) -> Option<Vec<String>> {
    let doc: Table = format!("{key} = 0").parse().ok()?;
    let mut segs = Vec::new();
    let mut cur = &doc;
    loop {
        if cur.len() != 1 {
            return None;
        }
        let (k, v) = cur.iter().next()?;
        segs.push(k.clone());
        match v {
            Value::Table(t) => cur = t,
            Value::Integer(0) => return Some(segs),
            _ => return None,
        }
    }
}

fn parse_override_value(raw: &str) -> Value {
    // A document with exactly one key guards against a value like "1\nother = 2" sneaking
    // in a second key: such a value is taken as a plain string instead.
    if let Ok(mut doc) = format!("v = {raw}").parse::<Table>() {
        if doc.len() == 1 {
            if let Some(v) = doc.remove("v") {
                return v;
            }
        }
    }
    Value::String(raw.to_string())
}

fn deserialize_value<T: DeserializeOwned>(
    value: &Value,
    file: &str,
    applied: &[(Vec<String>, String)],
) -> Result<T, RecipeError> {
    // Deserializing from a clone of the resolved Value (rather than the text) lets the
    // overrides take part; serde_path_to_error supplies the dotted path serde itself lacks.
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(t) => Ok(t),
        Err(err) => {
            let segments: Vec<String> = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let message = err.into_inner().message().to_string();
            Err(classify(segments, message, file, applied))
        }
    }
}

fn classify(
    mut segments: Vec<String>,
    message: String,
    file: &str,
    applied: &[(Vec<String>, String)],
) -> RecipeError {
    if let Some((field, expected)) = parse_unknown(&message, "unknown field") {
        // serde_path_to_error usually already ends the path with the unknown key; if it
        // stopped at the parent table, add it.
        if segments.last() != Some(&field) {
            segments.push(field.clone());
        }
        let suggestion = nearest(&field, &expected);
        return RecipeError::UnknownKey {
            key: clip(&segments.join(".")),
            file: file.to_string(),
            suggestion,
            expected,
            from_override: override_for(&segments, applied),
        };
    }
    let mut message = message;
    if let Some((variant, expected)) = parse_unknown(&message, "unknown variant") {
        if let Some(s) = nearest(&variant, &expected) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        }
    }
    let key = if segments.is_empty() {
        "<root>".to_string()
    } else {
        clip(&segments.join("."))
    };
    RecipeError::Invalid {
        from_override: override_for(&segments, applied),
        key,
        file: file.to_string(),
        // serde quotes the offending value ("invalid type: string \"...\"").
        message: clip(&message),
    }
}

/// Longest key or message (in characters) a recipe error quotes from the file: a corrupt
/// recipe can hold a key or a line of any length, and the error must stay readable.
const QUOTE_CHARS: usize = 200;

/// `s` cut to [`QUOTE_CHARS`] characters, with `...` when something was cut.
fn clip(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

/// toml's message (position, the offending source line with a caret, the reason) with
/// every line clipped: the quoted source line is as long as the file's line.
fn clip_lines(message: &str) -> String {
    message.lines().map(clip).collect::<Vec<_>>().join("\n")
}

/// The last override whose key is the offending key or a table containing it.
fn override_for(segments: &[String], applied: &[(Vec<String>, String)]) -> Option<String> {
    applied
        .iter()
        .rev()
        .find(|(path, _)| {
            segments.starts_with(path) || (!segments.is_empty() && path.starts_with(segments))
        })
        .map(|(_, spec)| spec.clone())
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (and the "unknown variant"
/// twin) into the offending name and the expected names. serde's wording of these
/// messages is fixed by `serde::de::Error::unknown_field`/`unknown_variant`.
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('`')?;
    let end = rest.find('`')?;
    let name = rest[..end].to_string();
    let tail = &rest[end + 1..];
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((name, expected))
}

/// The expected name nearest to `name` by edit distance, if it is plausibly a typo of it.
pub fn nearest(name: &str, expected: &[String]) -> Option<String> {
    let lower = name.to_lowercase();
    let (best, dist) = expected
        .iter()
        .map(|e| (e, strsim::levenshtein(&lower, &e.to_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    // Allow about one edit per three characters (at least two), so `lrr`→`lr` and
    // `warmup_step`→`warmup_steps` match but unrelated short keys do not.
    let limit = (name.chars().count() / 3).max(2);
    (dist <= limit).then(|| best.clone())
}

/// Serializes a typed recipe (including the values serde filled from defaults) to a TOML
/// value, for saving a fully explicit resolved recipe.
pub fn to_value<T: Serialize>(recipe: &T) -> Result<Value, RecipeError> {
    Value::try_from(recipe).map_err(|e| RecipeError::Serialize(e.to_string()))
}

/// Writes the resolved recipe as a TOML document at `path`, atomically (temporary file,
/// fsync, rename), so a crash never leaves a half-written recipe beside a checkpoint.
pub fn save_resolved(value: &Value, path: &Path) -> Result<(), RecipeError> {
    let text = to_toml_string(value)?;
    // The path in the error is the one that failed (the temporary sibling or the recipe).
    radit_util::fs::atomic_write(path, text.as_bytes()).map_err(|e| RecipeError::Io {
        action: "write",
        path: e.path,
        source: e.source,
    })
}

/// The resolved recipe as TOML text (the root must be a table).
pub fn to_toml_string(value: &Value) -> Result<String, RecipeError> {
    match value {
        Value::Table(t) => {
            toml::to_string_pretty(t).map_err(|e| RecipeError::Serialize(e.to_string()))
        }
        other => Err(RecipeError::Serialize(format!(
            "the root of a recipe must be a table, not a {}",
            other.type_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Recipe {
        name: String,
        #[serde(default)]
        seed: u64,
        stages: Stages,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Stages {
        lm_ft: Option<LmFt>,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct LmFt {
        lr: f64,
        #[serde(default)]
        warmup_steps: u64,
        #[serde(default)]
        datasets: Vec<String>,
        #[serde(default)]
        schedule: Option<Sched>,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum Sched {
        Constant,
        Cosine { total_steps: u64 },
    }

    const BASE: &str = r#"
name = "quick"
[stages.lm_ft]
lr = 1e-4
"#;

    fn parse(text: &str, ov: &[&str]) -> Result<(Recipe, Value), RecipeError> {
        let ov: Vec<String> = ov.iter().map(|s| s.to_string()).collect();
        parse_recipe(text, "recipe.toml", &ov)
    }

    #[test]
    fn an_oversized_recipe_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let text = format!("name = \"a\"\nx = {}\n", "{".repeat(2 << 20));
        std::fs::write(&path, text).unwrap();
        let e = load_recipe::<Recipe>(&path, &[]).unwrap_err();
        assert!(matches!(e, RecipeError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("at most 1048576 bytes"), "{e}");
    }

    #[test]
    fn errors_quote_at_most_a_clipped_key_or_line() {
        // Found by radit-fuzz: a 60,000-character key and a 100,000-bracket line came back
        // whole in the message.
        let long = "x".repeat(60_000);
        let cases = [
            format!("name = \"a\"\n[stages.lm_ft]\nlr{long} = 1.0\n"),
            format!("name = \"a\"\n[stages]\nlm_ft = {}\n", "[".repeat(100_000)),
            format!("name = \"{long}\"\n[stages]\nlm_ft = {{ lr = \"{long}\" }}\n"),
            format!("name = {long}\n"),
        ];
        for text in cases {
            let e = parse_recipe::<Recipe>(&text, "r.toml", &[]).unwrap_err();
            let m = e.to_string();
            assert!(m.len() < 2000, "{} bytes: {}", m.len(), &m[..300]);
        }
    }

    #[test]
    fn loads_and_applies_overrides() {
        let (r, v) = parse(
            BASE,
            &[
                "stages.lm_ft.lr=2e-5",
                "seed = 7",
                "stages.lm_ft.datasets=[\"a\", \"b\"]",
                "name=bare words",
            ],
        )
        .unwrap();
        assert_eq!(r.stages.lm_ft.as_ref().unwrap().lr, 2e-5);
        assert_eq!(r.seed, 7);
        assert_eq!(r.name, "bare words");
        assert_eq!(r.stages.lm_ft.as_ref().unwrap().datasets, vec!["a", "b"]);
        assert_eq!(v["stages"]["lm_ft"]["lr"].as_float(), Some(2e-5));
    }

    #[test]
    fn override_creates_intermediate_tables() {
        let (r, _) = parse("name = \"x\"\n[stages]\n", &["stages.lm_ft.lr=3"]).unwrap();
        assert_eq!(r.stages.lm_ft.unwrap().lr, 3.0);
    }

    #[test]
    fn unknown_key_names_path_file_and_suggestion() {
        let err = parse(&format!("{BASE}lrr = 3\n"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `stages.lm_ft.lrr` in recipe.toml (did you mean `lr`?)"
        );
        match err {
            RecipeError::UnknownKey { expected, .. } => {
                assert!(
                    expected.contains(&"warmup_steps".to_string()),
                    "{expected:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_top_level_key_without_close_match() {
        let err = parse(&format!("zzzzzzzz = 1\n{BASE}"), &[]).unwrap_err();
        // No key is close, so the message lists the valid keys at that level.
        let text = err.to_string();
        assert!(
            text.starts_with("unknown key `zzzzzzzz` in recipe.toml (valid keys there: `")
                && text.contains("`name`"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_from_override_fails_and_says_so() {
        let err = parse(BASE, &["stages.lm_ft.warmup_step=10"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `stages.lm_ft.warmup_step` in recipe.toml (did you mean `warmup_steps`?) \
             (set by override `stages.lm_ft.warmup_step=10`)"
        );
        let err = parse(BASE, &["stagez.lm_ft.lr=1"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown key `stagez` in recipe.toml (did you mean `stages`?)"),
            "{err}"
        );
    }

    #[test]
    fn type_error_names_key() {
        let err = parse(BASE, &["stages.lm_ft.lr=fast"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "invalid recipe recipe.toml: at `stages.lm_ft.lr`: invalid type: string \"fast\""
            ),
            "{msg}"
        );
        assert!(
            msg.ends_with("(set by override `stages.lm_ft.lr=fast`)"),
            "{msg}"
        );
    }

    #[test]
    fn missing_field_and_bad_variant() {
        let err = parse("name = \"x\"\n[stages.lm_ft]\nwarmup_steps = 1\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("at `stages.lm_ft`: missing field `lr`"),
            "{err}"
        );
        let err = parse(BASE, &["stages.lm_ft.schedule.kind=cosin"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("at `stages.lm_ft.schedule.kind`: unknown variant `cosin`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `cosine`?"), "{msg}");
    }

    #[test]
    fn unknown_key_inside_tagged_enum() {
        let err = parse(
            BASE,
            &["stages.lm_ft.schedule={kind=\"cosine\", total_steps=5, totl=1}"],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("totl"), "{msg}");
    }

    #[test]
    fn bad_overrides() {
        for (spec, why) in [
            ("noequals", "expected `dotted.key=value`"),
            ("=3", "the key is empty"),
            ("name.x=3", "`name` is a string, not a table"),
            ("a..b=3", "not a valid TOML dotted key"),
        ] {
            let err = parse(BASE, &[spec]).unwrap_err();
            assert!(
                matches!(err, RecipeError::BadOverride { .. }),
                "{spec}: {err}"
            );
            assert!(err.to_string().contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn value_injection_is_a_plain_string() {
        let (r, _) = parse(BASE, &["name=1\nseed = 9"]).unwrap();
        assert_eq!(r.name, "1\nseed = 9");
        assert_eq!(r.seed, 0);
    }

    #[test]
    fn syntax_error_names_file() {
        let err = parse("name = ", &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("recipe.toml is not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn save_and_reload_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (r, v) = parse(BASE, &["seed=3"]).unwrap();
        let p = dir.path().join("resolved.toml");
        save_resolved(&v, &p).unwrap();
        let (r2, _): (Recipe, _) = load_recipe(&p, &[]).unwrap();
        assert_eq!(r, r2);
        // The fully explicit form includes defaults.
        let full = to_value(&r).unwrap();
        assert_eq!(
            full["stages"]["lm_ft"]["warmup_steps"].as_integer(),
            Some(0)
        );
        let p2 = dir.path().join("full.toml");
        save_resolved(&full, &p2).unwrap();
        let (r3, _): (Recipe, _) = load_recipe(&p2, &[]).unwrap();
        assert_eq!(r, r3);
    }

    #[test]
    fn missing_file_is_io_error() {
        let err = load_recipe::<Recipe>(Path::new("/nonexistent/r.toml"), &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read recipe /nonexistent/r.toml"),
            "{err}"
        );
    }
}

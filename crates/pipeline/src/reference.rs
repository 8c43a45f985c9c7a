//! The recipe reference: every recipe key with its type, default and meaning, generated from
//! the recipe schema (the fields' doc comments and serde defaults, through `schemars`), so the
//! reference cannot drift from what [`Recipe::load`](crate::Recipe::load) accepts. `radit
//! recipe keys` prints it; `docs/recipe.md` is its checked-in copy, kept equal by a test.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::recipe::Recipe;

/// One documented key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// The full dotted key, as `--set` takes it (`stages.lm_ft.train.lr`).
    pub key: String,
    /// The value's type, in words (`integer`, `` `plain` | `chat` ``, `table`, ...).
    pub kind: String,
    /// The default as TOML, `None` for a required key, `Some("none")` for an optional one.
    pub default: Option<String>,
    /// What the key does (the field's doc comment).
    pub meaning: String,
    /// For a key of one variant of a tagged table (`schedule.kind = "cosine"`): the `kind`
    /// values it belongs to.
    pub variants: Vec<String>,
}

/// A table of the recipe (`[stages.lm_ft.train]`) and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The table's dotted path; empty for the top level.
    pub path: String,
    /// The table type's doc comment.
    pub about: String,
    /// Its keys, alphabetically, with their full paths.
    pub keys: Vec<KeyDoc>,
    /// When the same table type was already documented at another path: that path (the
    /// reference then points there instead of repeating it).
    pub same_as: Option<String>,
}

/// Every section of the recipe reference, top level first, each table after its parent.
pub fn recipe_sections() -> Vec<Section> {
    let schema = schemars::schema_for!(Recipe);
    let root = schema.as_value();
    let walker = Walker::new(root);
    let mut sections = Vec::new();
    let mut seen = BTreeMap::new();
    walker.table(String::new(), root, None, &mut seen, &mut sections);
    sections
}

/// The parameters of each built-in R-ft loss, documented like recipe keys under
/// `stages.r_ft.loss`.
pub fn loss_parameter_sections() -> Vec<(String, Section)> {
    radit_retriever::loss::builtin_parameter_schemas()
        .into_iter()
        .map(|(name, schema)| {
            let root = schema.as_value();
            let walker = Walker::new(root);
            let mut sections = Vec::new();
            walker.table(
                "stages.r_ft.loss".into(),
                root,
                None,
                &mut BTreeMap::new(),
                &mut sections,
            );
            let section = sections.into_iter().next().unwrap_or(Section {
                path: "stages.r_ft.loss".into(),
                about: String::new(),
                keys: Vec::new(),
                same_as: None,
            });
            (name.to_string(), section)
        })
        .collect()
}

/// The reference as Markdown: what `radit recipe keys` prints and `docs/recipe.md` holds.
pub fn recipe_reference() -> String {
    let mut out = String::new();
    out.push_str("# Recipe reference\n\n");
    out.push_str(
        "Every key a recipe may set, with its type, default and meaning. Generated from the \
         recipe schema by `radit recipe keys`; a test keeps this file equal to that output, so \
         it is always the schema `radit train` reads. Any key can be overridden on the command \
         line with `--set KEY=VALUE` (a TOML value). Relative paths in a recipe file are \
         relative to the file's folder. `radit recipe show RECIPE` prints a recipe with every \
         default filled in; `radit recipe validate RECIPE` lists every problem at once.\n",
    );
    // Sections inside a table documented by a pointer are covered by the pointer.
    let mut pointers: Vec<String> = Vec::new();
    for section in recipe_sections() {
        if pointers
            .iter()
            .any(|p| section.path.starts_with(&format!("{p}.")))
        {
            continue;
        }
        out.push('\n');
        if section.path.is_empty() {
            out.push_str("## Top level\n\n");
        } else {
            out.push_str(&format!("## `[{}]`\n\n", section.path));
        }
        if !section.about.is_empty() {
            out.push_str(&section.about);
            out.push_str("\n\n");
        }
        if let Some(first) = &section.same_as {
            pointers.push(section.path.clone());
            out.push_str(&format!(
                "The same keys as [`[{first}]`](#{}), under `{}.`.\n",
                anchor(first),
                section.path
            ));
            continue;
        }
        key_table(&mut out, &section.keys);
        if section.path == "stages.r_ft.loss" {
            loss_tables(&mut out);
        }
    }
    out
}

/// The per-loss parameter tables under `[stages.r_ft.loss]`.
fn loss_tables(out: &mut String) {
    out.push_str(
        "\nEvery other key of `[stages.r_ft.loss]` is a parameter of the loss named by `name`. \
         The built-in losses take these (a loss registered with `Pipeline::register_loss` \
         documents its own):\n",
    );
    for (name, section) in loss_parameter_sections() {
        out.push_str(&format!("\n### `name = \"{name}\"`\n\n"));
        if !section.about.is_empty() {
            out.push_str(&section.about);
            out.push_str("\n\n");
        }
        if section.keys.is_empty() {
            out.push_str("No parameters.\n");
        } else {
            key_table(out, &section.keys);
        }
    }
}

fn key_table(out: &mut String, keys: &[KeyDoc]) {
    out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    for key in keys {
        let mut meaning = key.meaning.clone();
        if !key.variants.is_empty() {
            let kinds: Vec<String> = key.variants.iter().map(|v| format!("`{v}`")).collect();
            meaning = format!("(kind {}) {meaning}", kinds.join(", "));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            key.key,
            cell(&key.kind),
            match &key.default {
                None => "required".to_string(),
                Some(d) if d == "none" => "none".to_string(),
                Some(d) => format!("`{}`", d.replace('|', "\\|")),
            },
            cell(&meaning)
        ));
    }
}

/// GitHub's heading anchor of `## `[path]``.
fn anchor(path: &str) -> String {
    path.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// Text made safe for one Markdown table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Walks a JSON schema made by `schemars` from the recipe types.
struct Walker {
    defs: Map<String, Value>,
}

impl Walker {
    /// A walker over `root`, resolving its `$ref`s against its `$defs`.
    fn new(root: &Value) -> Self {
        Self {
            defs: root
                .get("$defs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The schema behind a `$ref`, or `schema` itself.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/$defs/")
                .and_then(|name| self.defs.get(name))
                .unwrap_or(schema),
            None => schema,
        }
    }

    /// `schema` without the `null` alternative of an `Option`.
    fn non_null<'a>(&'a self, schema: &'a Value) -> &'a Value {
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let rest: Vec<&Value> = any.iter().filter(|s| !is_null(s)).collect();
            if rest.len() == 1 && rest.len() < any.len() {
                return self.resolve(rest[0]);
            }
        }
        self.resolve(schema)
    }

    /// Whether `schema` is a table with named keys (a struct).
    fn is_table(&self, schema: &Value) -> bool {
        let s = self.non_null(schema);
        s.get("properties").is_some() || self.tagged_variants(s).is_some()
    }

    /// The variants of an internally tagged enum (`kind = "..."`): tag key, (tag, variant).
    fn tagged_variants<'a>(
        &'a self,
        schema: &'a Value,
    ) -> Option<(String, Vec<(String, &'a Value)>)> {
        let variants = schema.get("oneOf").and_then(Value::as_array)?;
        let mut tag = None;
        let mut out = Vec::new();
        for v in variants {
            let props = v.get("properties")?.as_object()?;
            let (key, value) = props
                .iter()
                .find(|(_, p)| p.get("const").and_then(Value::as_str).is_some())?;
            if tag.get_or_insert_with(|| key.clone()) != key {
                return None;
            }
            out.push((value.get("const")?.as_str()?.to_string(), v));
        }
        Some((tag?, out))
    }

    /// Documents the table at `path` and, after it, every table inside it.
    fn table(
        &self,
        path: String,
        schema: &Value,
        field_about: Option<&str>,
        seen: &mut BTreeMap<String, String>,
        sections: &mut Vec<Section>,
    ) {
        let type_ref = schema
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_string);
        let inner = self.non_null(schema);
        let type_ref = type_ref.or_else(|| {
            schema
                .get("anyOf")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find_map(|s| s.get("$ref")?.as_str()))
                .map(str::to_string)
        });
        let about = description(inner)
            .or(field_about.map(str::to_string))
            .unwrap_or_default();
        // Most section types are documented just by their header (`` `[data]` ``).
        let about = match about.strip_prefix(&format!("`[{path}]`")) {
            Some(rest) => capitalized(rest.trim_start_matches(':').trim()),
            None => about,
        };
        // A table type met before is walked again (its keys exist at this path too) but
        // rendered as a pointer to the first.
        let same_as = match &type_ref {
            Some(r) => match seen.get(r) {
                Some(first) => Some(first.clone()),
                None => {
                    seen.insert(r.clone(), path.clone());
                    None
                }
            },
            None => None,
        };
        let at = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        let mut keys = Vec::new();
        let mut nested = Vec::new();
        if let Some((tag, variants)) = self.tagged_variants(inner) {
            let names: Vec<String> = variants.iter().map(|(n, _)| n.clone()).collect();
            keys.push(KeyDoc {
                key: at(&tag),
                kind: alternatives(&names),
                default: None,
                meaning: variants
                    .iter()
                    .map(|(n, v)| format!("`{n}`: {}", description(v).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" "),
                variants: Vec::new(),
            });
            let mut by_key: BTreeMap<String, KeyDoc> = BTreeMap::new();
            for (name, variant) in &variants {
                let required = required(variant);
                for (key, field) in properties(variant) {
                    if *key == tag {
                        continue;
                    }
                    let doc = by_key
                        .entry(key.clone())
                        .or_insert_with(|| self.key(at(key), field, required.contains(key)));
                    doc.variants.push(name.clone());
                }
            }
            keys.extend(by_key.into_values());
        } else {
            let required = required(inner);
            for (key, field) in properties(inner) {
                keys.push(self.key(at(key), field, required.contains(key)));
                if self.is_table(field) {
                    nested.push((at(key), field));
                }
            }
            if inner
                .get("additionalProperties")
                .is_some_and(|a| a != &Value::Bool(false))
            {
                keys.push(KeyDoc {
                    key: at("*"),
                    kind: "any".into(),
                    default: Some("none".into()),
                    meaning: "Any other key: a parameter of the named loss (below).".into(),
                    variants: Vec::new(),
                });
            }
        }
        sections.push(Section {
            path,
            about,
            keys,
            same_as,
        });
        // Built-in stages in run order (stable: other tables keep the schema's order), so
        // that LM-ft's section is the one that documents the shared train table.
        nested.sort_by_key(|(path, _)| {
            crate::stage::BuiltinStage::ALL
                .iter()
                .position(|s| *path == format!("stages.{}", s.name()))
                .unwrap_or(0)
        });
        for (path, field) in nested {
            let about = description(field);
            self.table(path, field, about.as_deref(), seen, sections);
        }
    }

    /// One key's row.
    fn key(&self, key: String, field: &Value, required: bool) -> KeyDoc {
        let inner = self.non_null(field);
        let kind = if self.is_table(field) {
            "table".to_string()
        } else {
            self.type_name(field)
        };
        let default = match field.get("default") {
            Some(Value::Null) => Some("none".into()),
            Some(value) => Some(toml_value(value)),
            None if required => None,
            None => Some("none".into()),
        };
        KeyDoc {
            key,
            kind,
            default,
            meaning: description(field)
                .or_else(|| description(inner))
                .unwrap_or_default(),
            variants: Vec::new(),
        }
    }

    /// A value type in words.
    fn type_name(&self, schema: &Value) -> String {
        let s = self.non_null(schema);
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            let names: Vec<String> = values.iter().map(toml_value).collect();
            return names.join(" | ");
        }
        if let Some(c) = s.get("const") {
            return format!("`{}`", toml_value(c));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array) {
                let consts: Option<Vec<String>> = alts
                    .iter()
                    .map(|a| a.get("const").and_then(Value::as_str).map(str::to_string))
                    .collect();
                if let Some(consts) = consts {
                    return alternatives(&consts);
                }
                let names: Vec<String> = alts
                    .iter()
                    .filter(|a| !is_null(a))
                    .map(|a| self.type_name(a))
                    .collect();
                return names.join(" or ");
            }
        }
        let types: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let names: Vec<String> = types
            .into_iter()
            .filter(|t| *t != "null")
            .map(|t| match t {
                "array" => match s.get("items") {
                    Some(items) => format!("list of {}", self.type_name(items)),
                    None => "list".into(),
                },
                "object" => "table".into(),
                "number" => "float".into(),
                other => other.into(),
            })
            .collect();
        if names.is_empty() {
            "any".into()
        } else {
            names.join(" or ")
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

fn properties(schema: &Value) -> Vec<(&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn alternatives(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`\"{n}\"`"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A doc comment as one paragraph of Markdown, with rustdoc's intra-doc links made plain code.
fn description(schema: &Value) -> Option<String> {
    let text = schema.get("description")?.as_str()?;
    Some(plain_links(text.trim()))
}

/// `` [`Name`] `` and `` [`Name`](path) `` become `` `Name` ``; `[text](path)` becomes `text`.
/// Brackets inside code spans (`` `[data]` ``) are kept.
fn plain_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['[', '`']) {
        if rest[open..].starts_with('`') {
            // A code span is copied whole, unless it opens a link's text.
            match rest[open + 1..].find('`') {
                Some(len) => {
                    let end = open + 1 + len + 1;
                    out.push_str(&rest[..end]);
                    rest = &rest[end..];
                }
                None => {
                    out.push_str(rest);
                    rest = "";
                }
            }
            continue;
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if !after[..close].contains('[') => {
                out.push_str(&after[..close]);
                rest = &after[close + 1..];
                if rest.starts_with('(') {
                    if let Some(end) = rest.find(')') {
                        rest = &rest[end + 1..];
                    }
                }
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A JSON default as a TOML value.
fn toml_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn quickstart() -> PathBuf {
        repo().join("recipes/quickstart.toml")
    }

    /// The dotted key of every leaf of a TOML table.
    fn leaves(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    fn lookup<'a>(value: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
        key.split('.').try_fold(value, |v, k| v.get(k))
    }

    #[test]
    fn docs_recipe_md_is_the_generated_reference() {
        let path = repo().join("docs/recipe.md");
        let generated = recipe_reference();
        if std::env::var_os("RADIT_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/recipe.md");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/recipe.md differs from the recipe schema: regenerate it with \
             `radit recipe keys > docs/recipe.md` (or RADIT_UPDATE_DOCS=1 cargo test)"
        );
    }

    #[test]
    fn builtin_losses_are_all_documented() {
        let documented: Vec<&str> = radit_retriever::loss::builtin_parameter_schemas()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            documented,
            radit_retriever::loss::LossRegistry::builtin().names()
        );
        let lsr = loss_parameter_sections()
            .into_iter()
            .find(|(name, _)| name == "lsr")
            .expect("lsr")
            .1;
        let keys: Vec<&str> = lsr.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "stages.r_ft.loss.direction",
                "stages.r_ft.loss.signal",
                "stages.r_ft.loss.temperature"
            ]
        );
    }

    /// Every key of a fully resolved shipped recipe (defaults filled in) is in the reference,
    /// so a field the schema derive misses cannot go undocumented.
    #[test]
    fn every_key_of_a_resolved_recipe_is_documented() {
        let recipe = Recipe::load(&quickstart(), &["stages.lm_ft.lora.rank=4".into()])
            .expect("quickstart loads");
        let value = radit_train::recipe::to_value(&recipe).expect("serializes");
        let mut keys = Vec::new();
        leaves("", &value, &mut keys);
        let sections = recipe_sections();
        let documented: Vec<&str> = sections
            .iter()
            .flat_map(|s| s.keys.iter().map(|k| k.key.as_str()))
            .collect();
        let loss_params: Vec<String> = loss_parameter_sections()
            .into_iter()
            .flat_map(|(_, s)| s.keys.into_iter().map(|k| k.key))
            .collect();
        assert!(keys.len() > 40, "{keys:?}");
        for key in &keys {
            assert!(
                documented.contains(&key.as_str()) || loss_params.contains(key),
                "`{key}` of the resolved recipe is not in the reference"
            );
        }
    }

    /// Every documented default is what the parser fills in: setting a key to its documented
    /// default loads, and the resolved recipe holds exactly that value.
    #[test]
    fn documented_defaults_are_the_parsers_defaults() {
        let mut checked = 0;
        let base = Recipe::load(&quickstart(), &[]).expect("quickstart loads");
        let base = radit_train::recipe::to_value(&base).expect("serializes");
        for section in recipe_sections() {
            // A table the quickstart lacks (`[stages.r_ft.feedback]`) needs its required
            // string keys to parse at all: give them a placeholder.
            let required: Vec<String> = section
                .keys
                .iter()
                .filter(|k| k.default.is_none() && k.kind == "string")
                .filter(|k| lookup(&base, &k.key).is_none())
                .map(|k| format!("{}=placeholder", k.key))
                .collect();
            // A stage the quickstart lacks (`[stages.dpo]`) needs its required keys too.
            let mut required = required;
            if section.path.starts_with("stages.dpo") && lookup(&base, "stages.dpo").is_none() {
                required.extend(
                    [
                        "stages.dpo.preferences=placeholder",
                        "stages.dpo.train.lr=1e-6",
                        "stages.dpo.train.max_steps=1",
                        "stages.dpo.train.schedule.kind=\"constant\"",
                    ]
                    .map(String::from),
                );
            }
            for key in &section.keys {
                let Some(default) = key.default.as_deref().filter(|d| *d != "none") else {
                    continue;
                };
                if !key.variants.is_empty() || key.key.ends_with('*') {
                    continue;
                }
                let set = format!("{}={default}", key.key);
                let mut sets = required.clone();
                sets.push(set.clone());
                let recipe = Recipe::load(&quickstart(), &sets)
                    .unwrap_or_else(|e| panic!("--set {set}: {e}"));
                let resolved = radit_train::recipe::to_value(&recipe).expect("serializes");
                let expected: toml::Value =
                    toml::from_str::<toml::Table>(&format!("v = {default}"))
                        .expect("a documented default is a TOML value")["v"]
                        .clone();
                assert_eq!(
                    lookup(&resolved, &key.key),
                    Some(&expected),
                    "{}: documented default {default}",
                    key.key
                );
                checked += 1;
            }
        }
        assert!(checked > 30, "only {checked} defaults checked");
    }

    #[test]
    fn links_become_plain_code() {
        assert_eq!(
            plain_links("see [`crate::Pipeline::with_stage`] and [improve](X::y) now"),
            "see `crate::Pipeline::with_stage` and improve now"
        );
        assert_eq!(plain_links("a [b"), "a [b");
        assert_eq!(plain_links("`[data]` and [`x`]"), "`[data]` and `x`");
    }

    #[test]
    fn every_table_and_key_is_documented() {
        let sections = recipe_sections();
        let keys: Vec<&str> = sections
            .iter()
            .flat_map(|s| s.keys.iter().map(|k| k.key.as_str()))
            .collect();
        for key in [
            "seed",
            "output_dir",
            "generator.model",
            "retriever.top_k",
            "data.train",
            "stages.lm_ft.train.lr",
            "stages.lm_ft.train.schedule.kind",
            "stages.lm_ft.train.schedule.total_steps",
            "stages.lm_ft.lora.rank",
            "stages.r_ft.loss.name",
            "logging.console_every",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        for section in &sections {
            for key in &section.keys {
                assert!(!key.meaning.is_empty(), "{} has no doc comment", key.key);
            }
        }
        // TrainConfig is documented once, and R-ft's section points at LM-ft's.
        let r_ft_train = sections
            .iter()
            .find(|s| s.path == "stages.r_ft.train")
            .expect("r_ft.train section");
        assert_eq!(r_ft_train.same_as.as_deref(), Some("stages.lm_ft.train"));
        let dpo_train = sections
            .iter()
            .find(|s| s.path == "stages.dpo.train")
            .expect("dpo.train section");
        assert_eq!(dpo_train.same_as.as_deref(), Some("stages.lm_ft.train"));
        for key in [
            "stages.dpo.preferences",
            "stages.dpo.beta",
            "stages.dpo.batch_size",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }
}

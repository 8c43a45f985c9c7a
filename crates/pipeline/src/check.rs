//! Every problem of a recipe at once (`radit recipe validate`): a recipe with five missing
//! keys should take one run to fix, not five.
//!
//! Structural problems (syntax, unknown keys, missing keys, wrong types) come from the
//! deserializer one at a time; each is recorded and set aside (an unknown key removed, a
//! missing or mistyped one given a placeholder) so the next can surface. A recipe that then
//! parses gets the semantic checks of [`Recipe::validate`](crate::Recipe::validate).

use std::path::Path;

use radit_train::recipe::{apply_override, parse_recipe, RecipeError};
use toml::{Table, Value};

use crate::recipe::Recipe;

/// At most this many structural problems are collected (a file that is not a recipe at all
/// would otherwise list every key of the schema).
const MAX_PROBLEMS: usize = 64;

/// Placeholders tried, in order, for a missing or mistyped key until one has the right type.
fn placeholders() -> [Value; 6] {
    [
        Value::Integer(1),
        Value::Float(1.0),
        Value::String("placeholder".into()),
        Value::Boolean(false),
        Value::Table(Table::new()),
        Value::Array(Vec::new()),
    ]
}

/// The table holding the last segment of `path`, if every segment before it is a table.
fn parent<'t>(root: &'t mut Table, path: &[String]) -> Option<&'t mut Table> {
    let (_, parents) = path.split_last()?;
    let mut table = root;
    for seg in parents {
        table = match table
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(t) => t,
            _ => return None,
        };
    }
    Some(table)
}

fn segments(key: &str) -> Vec<String> {
    key.split('.')
        .filter(|s| !s.is_empty() && *s != "<root>")
        .map(str::to_string)
        .collect()
}

/// The problem `err` reports and the key path it concerns.
fn problem(err: &RecipeError) -> (String, Option<Vec<String>>, bool) {
    match err {
        RecipeError::UnknownKey { key, .. } => (err.to_string(), Some(segments(key)), true),
        RecipeError::Invalid { key, message, .. } => {
            let mut path = segments(key);
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                path.push(field.to_string());
                let shown = path.join(".");
                return (format!("missing key `{shown}`"), Some(path), false);
            }
            (err.to_string(), Some(path), false)
        }
        other => (other.to_string(), None, false),
    }
}

/// Every problem of the recipe at `path` with `sets` applied; empty when it is valid.
pub fn check_recipe(path: &Path, sets: &[String]) -> Vec<String> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("cannot read {file}: {e}")],
    };
    let mut root: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return vec![format!("{file}: {}", e.to_string().trim_end())],
    };
    let mut problems = Vec::new();
    for spec in sets {
        if let Err(e) = apply_override(&mut root, spec) {
            problems.push(e.to_string());
        }
    }
    while problems.len() < MAX_PROBLEMS {
        let text = toml::to_string(&root).unwrap_or_default();
        let err = match parse_recipe::<Recipe>(&text, &file, &[]) {
            Ok(_) => break,
            Err(e) => e,
        };
        let (message, key, unknown) = problem(&err);
        problems.push(message);
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            break;
        };
        let Some(last) = key.last().cloned() else {
            break;
        };
        if unknown {
            match parent(&mut root, &key) {
                Some(table) => {
                    table.remove(&last);
                }
                None => break,
            }
            continue;
        }
        // Missing or mistyped: the first placeholder the deserializer accepts at that key.
        let mut fixed = false;
        for value in placeholders() {
            let Some(table) = parent(&mut root, &key) else {
                break;
            };
            table.insert(last.clone(), value);
            let text = toml::to_string(&root).unwrap_or_default();
            match parse_recipe::<Recipe>(&text, &file, &[]) {
                Ok(_) => {
                    fixed = true;
                    break;
                }
                Err(next) => {
                    if problem(&next).1.as_ref() != Some(&key) {
                        fixed = true;
                        break;
                    }
                }
            }
        }
        if !fixed {
            break;
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    match Recipe::load(path, sets) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_structural_problem_is_reported_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.toml");
        std::fs::write(
            &path,
            r#"output_dir = "out"
[generator]
model = "g"
[retriever]
encoder = "e"
colour = "blue"
[data]
train = "t.jsonl"
batch_size = "four"
[stages.lm_ft.train]
learning_rate = 1e-4
max_steps = 2
schedule = { kind = "constant" }
"#,
        )
        .unwrap();
        let problems = check_recipe(&path, &[]);
        let all = problems.join("\n");
        for expected in [
            "retriever.colour",
            "missing key `docstore`",
            "data.batch_size",
            "missing key `data.max_len`",
            "stages.lm_ft.train.learning_rate",
            "missing key `stages.lm_ft.train.lr`",
        ] {
            assert!(all.contains(expected), "{expected} not in:\n{all}");
        }
    }

    #[test]
    fn a_valid_recipe_has_no_problem_and_a_semantic_one_is_named() {
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes/quickstart.toml");
        assert_eq!(check_recipe(Path::new(repo), &[]), Vec::<String>::new());
        let problems = check_recipe(Path::new(repo), &["stages.lm_ft.train.lr=-1".into()]);
        assert!(
            problems.len() == 1 && problems[0].contains("stages.lm_ft.train.lr"),
            "{problems:?}"
        );
    }
}

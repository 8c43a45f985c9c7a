//! `radit recipe ls|cp|show|validate`: the shipped recipes, and a recipe resolved or checked
//! without running it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use radit_pipeline::{check_recipe, normalize_path, Recipe};

/// The recipes shipped with radit, by name (their text is built into the binary).
const SHIPPED: &[(&str, &str)] = &[
    (
        "quickstart",
        include_str!("../../../recipes/quickstart.toml"),
    ),
    (
        "smollm2-minilm-qa",
        include_str!("../../../recipes/smollm2-minilm-qa.toml"),
    ),
];

/// The radit checkout the shipped recipes' relative paths point into.
const RECIPES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes");

fn recipes_dir() -> PathBuf {
    normalize_path(Path::new(RECIPES_DIR))
}

/// `radit recipe ...`
#[derive(Subcommand)]
pub enum RecipeCommand {
    /// List the shipped recipes with their first line of description.
    Ls,
    /// Copy a shipped recipe to DEST (its relative paths made absolute, so it runs anywhere).
    Cp {
        /// A name from `radit recipe ls`.
        name: String,
        /// The new recipe file.
        dest: PathBuf,
    },
    /// Print a recipe fully resolved (defaults filled in, paths absolute) without running it.
    Show {
        /// A recipe file or a shipped recipe's name.
        recipe: String,
        /// Override a recipe key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Print every recipe key with its type, default and meaning (Markdown; the same text
    /// as docs/recipe.md).
    Keys,
    /// Check a recipe and print every problem at once.
    Validate {
        /// A recipe file or a shipped recipe's name.
        recipe: String,
        /// Override a recipe key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// A recipe file, or a shipped recipe's path in the checkout.
fn recipe_path(recipe: &str) -> Result<PathBuf> {
    let path = PathBuf::from(recipe);
    if path.is_file() {
        return Ok(path);
    }
    if shipped(recipe).is_some() {
        let shipped = recipes_dir().join(format!("{recipe}.toml"));
        if shipped.is_file() {
            return Ok(shipped);
        }
    }
    let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    bail!(
        "{recipe}: no such recipe file and not a shipped recipe (shipped: {})",
        names.join(", ")
    )
}

/// The text with every quoted relative path (`"../..."` or `"./..."`) made absolute against
/// `dir`.
fn absolute_paths(text: &str, dir: &Path) -> String {
    text.lines()
        .map(|line| {
            let Some((key, value)) = line.split_once(" = \"") else {
                return line.to_string();
            };
            if key.trim_start().starts_with('#')
                || !(value.starts_with("../") || value.starts_with("./"))
            {
                return line.to_string();
            }
            let (relative, rest) = value.split_once('"').unwrap_or((value, ""));
            let absolute = normalize_path(&dir.join(relative));
            format!("{key} = \"{}\"{rest}", absolute.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Runs one `radit recipe` command.
pub fn run(command: RecipeCommand) -> Result<()> {
    match command {
        RecipeCommand::Ls => {
            for (name, text) in SHIPPED {
                let about = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix('#'))
                    .unwrap_or("")
                    .trim();
                println!("{name:<20} {about}");
            }
        }
        RecipeCommand::Cp { name, dest } => {
            let Some(text) = shipped(&name) else {
                let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
                bail!("no shipped recipe `{name}` (shipped: {})", names.join(", "));
            };
            if dest.exists() {
                bail!("{} exists; choose another destination", dest.display());
            }
            std::fs::write(&dest, absolute_paths(text, &recipes_dir()))
                .with_context(|| format!("writing {}", dest.display()))?;
            eprintln!("wrote {}", dest.display());
        }
        RecipeCommand::Show { recipe, sets } => {
            let recipe = Recipe::load(&recipe_path(&recipe)?, &sets)?;
            print!(
                "{}",
                toml::to_string_pretty(&recipe).context("printing the recipe")?
            );
        }
        RecipeCommand::Keys => print!("{}", radit_pipeline::recipe_reference()),
        RecipeCommand::Validate { recipe, sets } => {
            let path = recipe_path(&recipe)?;
            let problems = check_recipe(&path, &sets);
            if problems.is_empty() {
                println!("{}: ok", path.display());
            } else {
                for p in &problems {
                    println!("- {p}");
                }
                bail!("{}: {} problem(s)", path.display(), problems.len());
            }
        }
    }
    Ok(())
}

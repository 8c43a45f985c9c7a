//! The RA-DIT prompt builder a recipe configures, shared by training, scoring and evaluation
//! so that every stage and `radit eval` render the same prompt.

use std::sync::Arc;

use radit_data::{InstanceBuilder, InstanceConfig, PromptStyle};
use radit_generator::PromptTokenizer;
use radit_models::{ChatMessage, TextTokenizer};

use crate::error::{invalid, Result};
use crate::recipe::{PromptKind, Recipe};

/// The recipe's instance builder (prompt style, `data.max_len`, marker seed).
pub fn prompt_builder<'t>(
    recipe: &Recipe,
    tokenizer: &'t TextTokenizer,
) -> Result<InstanceBuilder<PromptTokenizer<'t>>> {
    prompt_builder_with_len(recipe, tokenizer, recipe.data.max_len)
}

/// Like [`prompt_builder`] with another length limit (`radit eval --max-len`).
pub fn prompt_builder_with_len<'t>(
    recipe: &Recipe,
    tokenizer: &'t TextTokenizer,
    max_len: usize,
) -> Result<InstanceBuilder<PromptTokenizer<'t>>> {
    let builder = InstanceBuilder::new(
        PromptTokenizer(tokenizer),
        InstanceConfig {
            max_len,
            add_bos: false,
            seed: recipe.seed,
        },
    )?;
    Ok(match recipe.data.prompt {
        PromptKind::Plain => builder,
        PromptKind::Chat => {
            if tokenizer.chat_template().is_none() {
                invalid!("data.prompt = \"chat\" but the generator has no chat template");
            }
            let chat = tokenizer.clone();
            let render = move |user: &str| -> std::result::Result<String, radit_data::BoxError> {
                Ok(chat.apply_chat_template(&[ChatMessage::new("user", user)], true)?)
            };
            builder.with_style(PromptStyle::Chat(Arc::new(render)))
        }
    })
}

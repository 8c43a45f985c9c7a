use std::fmt;
use std::sync::Arc;

use crate::error::{BoxError, DataError};
use crate::instance::ExampleKey;
use crate::rng::{mix, TAG_MARKERS};

/// The instruction markers of the RA-DIT prompt; one is drawn per example.
pub const INSTRUCTION_PREFIXES: [&str; 2] = ["Q: ", "Question: "];
/// The answer markers of the RA-DIT prompt; one is drawn per example.
pub const ANSWER_PREFIXES: [&str; 2] = ["A: ", "Answer: "];
/// Introduces the retrieved (or gold) chunk.
pub const BACKGROUND_PREFIX: &str = "Background: ";
/// Separates the background from the instruction.
pub const BACKGROUND_SEPARATOR: &str = "\n\n";

/// The instruction and answer markers of one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Markers {
    /// One of [`INSTRUCTION_PREFIXES`].
    pub instruction: &'static str,
    /// One of [`ANSWER_PREFIXES`].
    pub answer: &'static str,
}

/// Draws the markers of an example from a hash of (seed, dataset, example): a pure function,
/// so resuming needs no generator state and all k instances of an example agree.
pub fn markers(seed: u64, key: ExampleKey) -> Markers {
    let h = mix(&[seed, TAG_MARKERS, key.dataset as u64, key.example as u64]);
    Markers {
        instruction: INSTRUCTION_PREFIXES[(h & 1) as usize],
        answer: ANSWER_PREFIXES[((h >> 1) & 1) as usize],
    }
}

/// Renders a user message with a chat model's template, including the generation prompt
/// that opens the assistant turn. The output must contain the user message verbatim.
pub trait ChatRender: Send + Sync {
    /// The full prompt text for one user turn, ending where the assistant's reply begins.
    fn render_user(&self, user_message: &str) -> Result<String, BoxError>;
}

impl<F> ChatRender for F
where
    F: Fn(&str) -> Result<String, BoxError> + Send + Sync,
{
    fn render_user(&self, user_message: &str) -> Result<String, BoxError> {
        self(user_message)
    }
}

/// Plain RA-DIT text, or the same text as the user turn of a chat template.
#[derive(Clone, Default)]
pub enum PromptStyle {
    /// `Background: {chunk}\n\n{instruction}{answer}`.
    #[default]
    Plain,
    /// The user message is `Background: {chunk}\n\n{instruction}`, rendered by the template;
    /// the assistant turn is `{answer prefix}{answer}`.
    Chat(Arc<dyn ChatRender>),
}

impl fmt::Debug for PromptStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptStyle::Plain => f.write_str("Plain"),
            PromptStyle::Chat(_) => f.write_str("Chat(..)"),
        }
    }
}

/// A prompt split so that the background can be truncated on its own: the full prompt is
/// `head + chunk + tail`, and the answer segment follows it.
///
/// Spaces at a boundary go with the following segment (`"Background:"` + `" text"`,
/// `"...A:"` + `" Paris"`): byte-level BPE tokenizers attach a space to the next word, so
/// tokenizing segments separately then matches tokenizing the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptParts {
    /// Text before the chunk (empty without background in the plain style).
    pub head: String,
    /// The chunk, with its leading space (empty without background).
    pub chunk: String,
    /// Text after the chunk up to and including the answer marker (without its space).
    pub tail: String,
    /// Space that starts the answer segment (the answer marker's trailing space).
    pub answer_lead: String,
}

impl PromptParts {
    /// The prompt text as one string (what a generator continues).
    pub fn prompt_text(&self) -> String {
        format!("{}{}{}", self.head, self.chunk, self.tail)
    }

    /// The answer segment for `answer` (leading space included).
    pub fn answer_text(&self, answer: &str) -> String {
        format!("{}{}", self.answer_lead, answer.trim())
    }
}

/// Renders the RA-DIT prompt for one question with an optional background chunk.
pub fn render_prompt(
    style: &PromptStyle,
    markers: Markers,
    question: &str,
    background: Option<&str>,
) -> Result<PromptParts, DataError> {
    let question = question.trim();
    let background = background.map(str::trim).filter(|b| !b.is_empty());
    let bg_label = BACKGROUND_PREFIX.trim_end();
    let answer_marker = markers.answer.trim_end();
    let answer_lead = markers.answer[answer_marker.len()..].to_string();
    let instruction = format!("{}{}\n", markers.instruction, question);
    match style {
        PromptStyle::Plain => Ok(match background {
            Some(b) => PromptParts {
                head: bg_label.to_string(),
                chunk: format!(" {b}"),
                tail: format!("{BACKGROUND_SEPARATOR}{instruction}{answer_marker}"),
                answer_lead,
            },
            None => PromptParts {
                head: String::new(),
                chunk: String::new(),
                tail: format!("{instruction}{answer_marker}"),
                answer_lead,
            },
        }),
        PromptStyle::Chat(chat) => {
            let user = match background {
                Some(b) => format!("{BACKGROUND_PREFIX}{b}{BACKGROUND_SEPARATOR}{instruction}"),
                None => instruction.clone(),
            };
            let rendered = chat
                .render_user(&user)
                .map_err(|e| DataError::ChatTemplate(e.to_string()))?;
            match background {
                Some(b) => {
                    let needle = format!("{BACKGROUND_PREFIX}{b}");
                    let at = rendered.find(&needle).ok_or_else(|| {
                        DataError::ChatTemplate(
                            "the rendered prompt does not contain the user message verbatim".into(),
                        )
                    })?;
                    let chunk_start = at + bg_label.len();
                    let chunk_end = at + needle.len();
                    Ok(PromptParts {
                        head: rendered[..chunk_start].to_string(),
                        chunk: rendered[chunk_start..chunk_end].to_string(),
                        tail: format!("{}{answer_marker}", &rendered[chunk_end..]),
                        answer_lead,
                    })
                }
                None => Ok(PromptParts {
                    head: String::new(),
                    chunk: String::new(),
                    tail: format!("{rendered}{answer_marker}"),
                    answer_lead,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Markers = Markers {
        instruction: "Q: ",
        answer: "A: ",
    };

    #[test]
    fn plain_prompt_is_the_paper_format() {
        let p = render_prompt(&PromptStyle::Plain, M, " Who? ", Some("Some text.")).unwrap();
        assert_eq!(
            format!("{}{}", p.prompt_text(), p.answer_text("Bob")),
            "Background: Some text.\n\nQ: Who?\nA: Bob"
        );
        let p = render_prompt(&PromptStyle::Plain, M, "Who?", None).unwrap();
        assert_eq!(p.prompt_text(), "Q: Who?\nA:");
    }

    #[test]
    fn chat_prompt_splits_around_the_chunk() {
        let chat: Arc<dyn ChatRender> = Arc::new(|u: &str| -> Result<String, BoxError> {
            Ok(format!("<user>{u}</user><assistant>"))
        });
        let style = PromptStyle::Chat(chat);
        let p = render_prompt(&style, M, "Who?", Some("Text")).unwrap();
        assert_eq!(p.head, "<user>Background:");
        assert_eq!(p.chunk, " Text");
        assert_eq!(p.tail, "\n\nQ: Who?\n</user><assistant>A:");
        let bad: Arc<dyn ChatRender> =
            Arc::new(|_: &str| -> Result<String, BoxError> { Ok("nothing".into()) });
        assert!(render_prompt(&PromptStyle::Chat(bad), M, "Who?", Some("Text")).is_err());
    }

    #[test]
    fn markers_are_deterministic_and_varied() {
        let mut seen = std::collections::HashSet::new();
        for e in 0..64 {
            let k = ExampleKey {
                dataset: 0,
                example: e,
            };
            assert_eq!(markers(7, k), markers(7, k));
            seen.insert((markers(7, k).instruction, markers(7, k).answer));
        }
        assert_eq!(seen.len(), 4, "all four marker combinations occur");
    }
}

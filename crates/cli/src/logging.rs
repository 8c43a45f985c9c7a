//! Where library messages go: the libraries log through `tracing`; the binary prints them on
//! stderr as plain lines (`warning: ...` for warnings), filtered by `RUST_LOG` when set.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// radit's own messages at `info`, other crates' (burn, wgpu) only from `warn` up.
const DEFAULT_FILTER: &str = "warn,radit=info,radit_pipeline=info,radit_train=info,\
radit_generator=info,radit_retriever=info,radit_eval=info,radit_docstore=info,radit_data=info,\
radit_models=info,radit_bench=info";

/// A message per line, prefixed by its severity unless it is plain information.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the stderr subscriber (once; a second call is a no-op).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .try_init();
}

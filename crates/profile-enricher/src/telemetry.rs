//! Structured logs: one compact line per event for people by default, JSON lines
//! (`LOG_FORMAT=json`) for collectors; filtered by `RUST_LOG`, `info` when unset
//! or empty (as in `.env.example`-style files).

use std::io::IsTerminal;

use anyhow::anyhow;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber; call once in `main`, before the server starts
/// (never in `--health-check` mode, whose only output is its exit code).
pub fn init_subscriber() -> anyhow::Result<()> {
    // Invalid directives are reported on stderr and skipped; none left means `info`.
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only help a terminal; in a file or a log store they are noise.
        .with_ansi(std::io::stdout().is_terminal());
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| anyhow!("could not install the log subscriber: {e}"))
}

//! Structured logs: pretty for people by default, JSON (`LOG_FORMAT=json`) for
//! collectors; filtered by `RUST_LOG`, `info` when unset.

use anyhow::anyhow;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init_subscriber() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.pretty().try_init()
    };
    installed.map_err(|e| anyhow!("could not install the log subscriber: {e}"))
}

//! Structured logs, the same in every process: one compact line per event by
//! default, JSON lines with `LOG_FORMAT=json`; filtered by `RUST_LOG`, `info` when
//! unset or empty. Handlers log user ids, never personal data, so the default
//! level is safe to ship to a log store.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init() {
    // Invalid directives are reported on stderr and skipped; none left means `info`.
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only help a terminal; in a file or a log store they are noise.
        .with_ansi(std::io::stdout().is_terminal());
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

//! Logging: pretty lines locally, JSON lines when `LOG_FORMAT=json`; the level
//! comes from `RUST_LOG` (default `info`). Handlers log user ids, never personal
//! data, so the default level is safe to ship to a log store.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

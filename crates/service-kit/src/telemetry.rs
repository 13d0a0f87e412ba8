//! Logs and traces, the same in every process.
//!
//! **Logs**: one compact line per event by default, JSON lines with
//! `LOG_FORMAT=json`; filtered by `RUST_LOG`, `info` when unset or empty.
//! Handlers log user ids, never personal data, so the default level is safe to
//! ship to a log store.
//!
//! **Traces** (OpenTelemetry): off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set - then nothing is exported,
//! propagated or added to a log line, and no span exists only for tracing.
//! When on:
//! - spans at `info` and above are exported in batches over OTLP/HTTP
//!   (protobuf), whatever `RUST_LOG` says (it filters the logs, not the
//!   traces); the standard `OTEL_*` variables apply (`OTEL_SERVICE_NAME`,
//!   default the process's name; `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`,
//!   `OTEL_TRACES_SAMPLER`);
//! - the W3C trace context (`traceparent`, `tracestate`) of incoming HTTP
//!   requests and Kafka records is continued, and sent on upstream calls and
//!   produced records;
//! - JSON log lines inside a span carry its `trace_id` and `span_id`.
//!
//! [`init`] returns a guard: dropping it exports what is left, waiting at most
//! [`FLUSH_TIMEOUT`], so a stopping process keeps its last spans and still
//! exits within its shutdown bound.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How long dropping the [`Telemetry`] guard waits for the last spans to be
/// exported.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (see the module's documentation). Code that
/// makes a span only for tracing - a span per Kafka record, per upstream
/// call - asks this first.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Exports what is left of the traces when dropped (see [`init`]).
#[must_use = "dropping the guard stops the export of traces"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            TRACING.store(false, Ordering::Relaxed);
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(%error, "the last spans could not be exported");
            }
        }
    }
}

/// Installs the global subscriber once; later calls (tests) install nothing
/// and return an empty guard. `service` names the process in its traces
/// unless `OTEL_SERVICE_NAME` does.
pub fn init(service: &'static str) -> Telemetry {
    // Invalid directives are reported on stderr and skipped; none left means `info`.
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // Colour codes only help a terminal; in a file or a log store they are noise.
    let ansi = std::io::stdout().is_terminal();
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds(
                Format::default()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            ))
            .fmt_fields(JsonFields::new())
            .with_ansi(false)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer::<Registry>()
            .fmt_fields(DefaultFields::new())
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed()
    };
    let (provider, traces) = match tracer_provider(service) {
        Ok(Some(provider)) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service))
                .with_filter(LevelFilter::INFO);
            (Some(provider), Some(layer))
        }
        Ok(None) => (None, None),
        Err(error) => {
            eprintln!("OpenTelemetry is off: cannot make the OTLP exporter: {error}");
            (None, None)
        }
    };
    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_err()
    {
        // Already installed (tests call this once per test).
        return Telemetry { provider: None };
    }
    if let Some(provider) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        TRACING.store(true, Ordering::Relaxed);
    }
    Telemetry { provider }
}

/// The OTLP exporter's provider, when an endpoint is configured.
fn tracer_provider(service: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    // The exporter's blocking HTTP client owns a runtime of its own, which
    // cannot be made (or dropped) on a Tokio worker: it is made on a thread.
    let exporter = std::thread::spawn(|| SpanExporter::builder().with_http().build())
        .join()
        .map_err(|_| "the exporter's thread panicked".to_owned())?
        .map_err(|error| error.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The JSON line of an event inside a traced span, with the span's
/// `trace_id` and `span_id` first (what a log store joins with the traces).
struct WithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = tracing_enabled()
            .then(|| ctx.lookup_current())
            .flatten()
            .and_then(|current| {
                // The subscriber is the global default (set in `init`).
                tracing::dispatcher::get_default(|dispatch| {
                    current.scope().find_map(|span| {
                        tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                    })
                })
            })
            .map(|context| {
                let span = context.span();
                let ids = span.span_context();
                (ids.trace_id(), ids.span_id())
            })
            .filter(|(trace_id, _)| *trace_id != TraceId::INVALID);
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                r#"{{"trace_id":"{trace_id}","span_id":"{span_id}",{rest}"#
            ),
            None => writer.write_str(&line),
        }
    }
}

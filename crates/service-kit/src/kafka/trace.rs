//! The W3C trace context (`traceparent`, `tracestate`) in Kafka record
//! headers: read from a consumed record to continue its producer's trace,
//! written on a produced record so its consumer continues ours. Both go
//! through OpenTelemetry's global propagator, which is installed only while
//! traces are exported (`service_kit::telemetry`); otherwise a record span is
//! never made and nothing is written.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry;

/// A span for one consumed record that carries a trace context in its
/// headers, continuing that trace. `None` for a record without one (a bulk
/// backfill makes no span per record) and while traces are off.
pub fn record_span(
    name: &'static str,
    headers: Option<&OwnedHeaders>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<Span> {
    if !telemetry::tracing_enabled() {
        return None;
    }
    let headers = headers?;
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&RecordHeaders(headers))
    });
    if !parent.span().span_context().is_valid() {
        return None;
    }
    let span = tracing::info_span!(
        "kafka record",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        messaging.destination.partition.id = partition,
        messaging.kafka.offset = offset,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// Headers holding the trace context of `span`, for a record to produce;
/// `None` while traces are off (the record then goes without headers).
pub fn trace_context(span: &Span) -> Option<OwnedHeaders> {
    if !telemetry::tracing_enabled() {
        return None;
    }
    let context: Context = span.context();
    let mut fields = Fields(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields)
    });
    Some(
        fields
            .0
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            }),
    )
}

struct RecordHeaders<'a>(&'a OwnedHeaders);

impl Extractor for RecordHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

struct Fields(Vec<(String, String)>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

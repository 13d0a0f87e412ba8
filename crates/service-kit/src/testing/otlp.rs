//! An OTLP/HTTP receiver for a test ([`Receiver`]) and the spans a process
//! exported to it (protobuf), read back; `traceparent` values taken apart.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Takes every `POST /v1/traces`: point `OTEL_EXPORTER_OTLP_ENDPOINT` at
/// [`Receiver::uri`], read what arrived with [`Receiver::spans`].
pub struct Receiver(MockServer);

impl Receiver {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Self(server)
    }

    pub fn uri(&self) -> String {
        self.0.uri()
    }

    /// Every span exported to it so far.
    pub async fn spans(&self) -> Vec<ExportedSpan> {
        let requests = self.0.received_requests().await.unwrap_or_default();
        spans(requests.iter().map(|request| request.body.as_slice()))
    }
}

/// The (trace id, parent id) of a W3C `traceparent` value.
pub fn trace_parent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// One exported span, its ids in lowercase hex (as in `traceparent`).
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// `service.name` of the resource that exported it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// The (trace id, span id) of each span it links to.
    pub links: Vec<(String, String)>,
}

/// Every span in `bodies`; panics on a body that is not an OTLP export request.
fn spans<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    for body in bodies {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(
                    |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(name) => Some(name.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_default();
            for span in resource
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                });
            }
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

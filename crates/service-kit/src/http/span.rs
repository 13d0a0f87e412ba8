//! The span of every HTTP request (tracing-actix-web's root span).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::telemetry;

/// The request's span: tracing-actix-web's own while traces are exported (it
/// continues the request's W3C trace context and records the trace id);
/// otherwise the same span without the trace part, so that log lines carry no
/// all-zero `trace_id` and a request pays nothing for tracing. Use it as
/// `TracingLogger::<RequestSpan>::new()`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        if telemetry::tracing_enabled() {
            return DefaultRootSpanBuilder::on_request_start(request);
        }
        let method = request.method().as_str();
        let route = request.match_pattern();
        let route = route.as_deref().unwrap_or("default");
        let connection = request.connection_info();
        let request_id = request.extensions().get::<RequestId>().copied();
        tracing::info_span!(
            "HTTP request",
            http.method = method,
            http.route = route,
            http.flavor = ?request.version(),
            http.scheme = connection.scheme(),
            http.host = connection.host(),
            http.client_ip = connection.realip_remote_addr().unwrap_or(""),
            http.user_agent = request
                .headers()
                .get("user-agent")
                .and_then(|agent| agent.to_str().ok())
                .unwrap_or(""),
            http.target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = request_id.map(tracing::field::display),
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

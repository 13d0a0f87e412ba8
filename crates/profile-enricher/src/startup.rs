use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use reqwest::Url;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;

use service_kit::http::{ApiTokens, DocsPage, RequestSpan, guard, record_request, render_problem};
use service_kit::settings::HttpSettings;

use crate::config::Settings;
use crate::enrichment::EnrichmentClient;
use crate::error::ApiError;
use crate::kafka::{KafkaMode, KafkaStatus, KafkaWorker};
use crate::metrics::Metrics;
use crate::{openapi, routes};

/// How long in-flight HTTP requests may finish after SIGTERM, so that the
/// process exits within 10 s.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

pub struct Application {
    port: u16,
    server: Server,
    /// The Kafka mode, when `ENRICHER_INPUT_TOPIC` is set.
    worker: Option<KafkaWorker>,
}

impl Application {
    /// Binds first, so that the port is known (port 0 in tests) before the default
    /// upstream - our own `/dummy-enrich` - is derived from it.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("could not bind {}:{}", settings.host, settings.port))?;
        let address = listener
            .local_addr()
            .context("could not read the bound address")?;
        let (url, token) = match settings.external_api_url.clone() {
            Some(url) => (url, None),
            None => (
                own_dummy_enrich(address)?,
                settings.api_tokens.first().map(str::to_owned),
            ),
        };
        let metrics = Metrics::new().context("could not register the metrics")?;
        let client = EnrichmentClient::new(&settings.upstream, url, token, metrics.clone())
            .context("could not build the upstream HTTP client")?;
        tracing::info!(
            %address,
            upstream = %client.url().origin().ascii_serialization(),
            env = %settings.env,
            "profile-enricher listening"
        );
        settings.api_tokens.warn_when_off();
        let client = web::Data::new(client);
        let (worker, intake, kafka_status) =
            match KafkaWorker::build(&settings.kafka, client.clone(), metrics.clone())
                .context("could not set up the Kafka clients")?
            {
                Some(KafkaMode {
                    worker,
                    intake,
                    status,
                }) => (
                    Some(worker),
                    Some(web::Data::new(intake)),
                    Some(web::Data::from(status)),
                ),
                None => (None, None, None),
            };
        let state = State {
            client,
            kafka_status,
            intake,
            http_metrics: web::Data::new(metrics.http.clone()),
            metrics: web::Data::new(metrics),
            docs: web::Data::new(DocsPage::new(openapi::ApiDoc::openapi())),
            tokens: web::Data::new(settings.api_tokens),
            environment: web::Data::new(routes::Environment(settings.env)),
            http: settings.http.clone(),
        };
        let http = settings.http;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(ErrorHandlers::new().default_handler(render_problem))
                .wrap(from_fn(guard))
                .wrap(from_fn(record_request))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.http.clone())
                .app_data(web::Data::new(state.client.for_worker()))
                .app_data(state.metrics.clone())
                .app_data(state.http_metrics.clone())
                .app_data(state.docs.clone())
                .app_data(state.tokens.clone())
                .app_data(state.environment.clone())
                .configure(|config| {
                    if let Some(status) = &state.kafka_status {
                        config.app_data(status.clone());
                    }
                    if let Some(intake) = &state.intake {
                        config.app_data(intake.clone());
                    }
                })
                .configure(configure)
        })
        .client_request_timeout(http.head_timeout)
        .keep_alive(http.keep_alive)
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .listen(listener)
        .context("could not start the HTTP server")?
        .run();
        Ok(Self {
            port: address.port(),
            server,
            worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves (and consumes, in the Kafka mode) until SIGTERM/SIGINT, then
    /// drains in-flight requests and records, all within 10 s.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        match self.worker {
            None => self.server.await,
            Some(worker) => {
                let (served, ()) =
                    tokio::join!(self.server, worker.run(service_kit::shutdown::signal()));
                served
            }
        }
    }
}

/// Shared by every worker: one connection pool, one set of concurrency slots.
struct State {
    client: web::Data<EnrichmentClient>,
    metrics: web::Data<Metrics>,
    http_metrics: web::Data<service_kit::http::HttpMetrics>,
    docs: web::Data<DocsPage>,
    tokens: web::Data<ApiTokens>,
    environment: web::Data<routes::Environment>,
    http: HttpSettings,
    /// Only in the Kafka mode: `/metrics` shows the Kafka side's health;
    /// `Prefer: respond-async` produces through the intake.
    kafka_status: Option<web::Data<KafkaStatus>>,
    intake: Option<web::Data<crate::kafka::Intake>>,
}

/// Every route of the service. Errors are answered as problem+json, including a
/// wrong method (with `Allow`). With `API_TOKENS` set, the guard asks a token of
/// every path but the probes, `/metrics`, `/openapi.json` and `/docs`.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/health")
                .route(web::get().to(routes::health))
                .default_service(only("GET")),
        )
        .service(
            web::resource("/ready")
                .route(web::get().to(routes::ready))
                .default_service(only("GET")),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(routes::metrics))
                .default_service(only("GET")),
        )
        .service(
            web::resource("/openapi.json")
                .route(web::get().to(openapi::openapi_json))
                .default_service(only("GET")),
        )
        .service(
            web::resource("/docs")
                .route(web::get().to(service_kit::http::docs))
                .default_service(only("GET")),
        )
        .service(
            web::resource("/users")
                .route(web::post().to(routes::enrich_user))
                .default_service(only("POST")),
        )
        .service(
            web::resource("/dummy-enrich")
                .route(web::post().to(routes::dummy_enrich))
                .default_service(only("POST")),
        );
}

fn only(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}

/// Our own `/dummy-enrich`, reached over loopback when bound to every interface.
fn own_dummy_enrich(address: SocketAddr) -> anyhow::Result<Url> {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!(
        "http://{}/dummy-enrich",
        SocketAddr::new(ip, address.port())
    );
    Url::parse(&url).with_context(|| format!("invalid default upstream {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_upstream_is_our_own_dummy_enrich_over_loopback() {
        let url = |address: &str| {
            own_dummy_enrich(address.parse().unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(url("0.0.0.0:8000"), "http://127.0.0.1:8000/dummy-enrich");
        assert_eq!(url("[::]:8000"), "http://[::1]:8000/dummy-enrich");
        assert_eq!(url("10.1.2.3:9000"), "http://10.1.2.3:9000/dummy-enrich");
    }
}

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::config::{HttpSettings, Settings};
use crate::http::{ApiTokens, limit_head_size, render_problem, request_id_header, require_token};
use crate::routes::configure;
use crate::store::Database;

/// What every handler shares.
pub struct AppState {
    pub database: Database,
    pub http: HttpSettings,
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free one), starts migrating in the
    /// background and prepares the server. The database may still be down.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind((settings.user_info_host.as_str(), settings.user_info_port))?;
        let port = listener.local_addr()?.port();
        let database = Database::start(
            &settings.database_url,
            settings.database_pool_size,
            settings.connect_timeout(),
        );
        let state = web::Data::new(AppState {
            database,
            http: settings.http.clone(),
        });
        let tokens = web::Data::new(ApiTokens::parse(settings.api_tokens.as_deref()));
        let http = settings.http;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(ErrorHandlers::new().default_handler(render_problem))
                .wrap(from_fn(require_token))
                .wrap(from_fn(limit_head_size))
                .wrap(from_fn(add_request_id))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .app_data(tokens.clone())
                .app_data(web::QueryConfig::default())
                .configure(configure)
        })
        .client_request_timeout(http.head_timeout())
        .keep_alive(http.keep_alive())
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then finishes in-flight requests (10 s at most).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn add_request_id(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let id = request_id_header(&req);
    let mut res = next.call(req).await?;
    if let Some(id) = id {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            id,
        );
    }
    Ok(res)
}

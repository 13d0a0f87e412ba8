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
        let database_settings = settings.database();
        let database = Database::start(&database_settings)?;
        // One pool per worker thread, DATABASE_POOL_SIZE split evenly over them
        // (rounded up): a connection's I/O then runs on the thread whose requests
        // use it.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool_per_worker = database_settings.pool_size.div_ceil(workers);
        let tokens = web::Data::new(ApiTokens::parse(settings.api_tokens.as_deref()));
        let http = settings.http;
        let worker_http = http.clone();
        let server = HttpServer::new(move || {
            let state = web::Data::new(AppState {
                database: database.with_own_pool(pool_per_worker),
                http: worker_http.clone(),
            });
            App::new()
                .wrap(ErrorHandlers::new().default_handler(render_problem))
                .wrap(from_fn(require_token))
                .wrap(from_fn(limit_head_size))
                .wrap(from_fn(add_request_id))
                .wrap(TracingLogger::default())
                .app_data(state)
                .app_data(tokens.clone())
                .app_data(web::QueryConfig::default())
                .configure(configure)
        })
        .workers(workers)
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

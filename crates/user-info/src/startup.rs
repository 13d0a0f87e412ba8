use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use service_kit::http::{guard, render_problem};
use tracing_actix_web::TracingLogger;
use user_store::Database;

use crate::config::Settings;
use crate::routes::configure;

/// What every handler shares.
pub struct AppState {
    pub database: Database,
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free one), starts migrating in the
    /// background and prepares the server. The database may still be down.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let database = Database::start(&settings.database, "user-info")?;
        // One pool per worker thread, DATABASE_POOL_SIZE split evenly over them
        // (rounded up): a connection's I/O then runs on the thread whose requests
        // use it.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool_per_worker = settings.database.pool_size.div_ceil(workers);
        let tokens = web::Data::new(settings.api_tokens);
        let http = settings.http;
        let worker_http = http.clone();
        let server = HttpServer::new(move || {
            let state = web::Data::new(AppState {
                database: database.with_own_pool(pool_per_worker),
            });
            App::new()
                .wrap(ErrorHandlers::new().default_handler(render_problem))
                .wrap(from_fn(guard))
                .wrap(TracingLogger::default())
                .app_data(state)
                .app_data(tokens.clone())
                .app_data(worker_http.clone())
                .configure(configure)
        })
        .workers(workers)
        .client_request_timeout(http.head_timeout)
        .keep_alive(http.keep_alive)
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

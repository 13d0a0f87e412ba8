//! Settings, from environment variables (and a `.env` file when present).

use std::time::Duration;

use config::{Config, ConfigError, Environment};
use serde::Deserialize;

use crate::store::DatabaseSettings;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub user_info_host: String,
    pub user_info_port: u16,
    pub database_url: String,
    pub database_pool_size: u32,
    /// Seconds a request waits for a database connection before its 503.
    pub database_connect_timeout: f64,
    /// Seconds the database may take to answer one operation before its 503.
    pub database_query_timeout: f64,
    /// Comma-separated bearer tokens; unset or empty = no authentication.
    #[serde(default)]
    pub api_tokens: Option<String>,
    #[serde(flatten)]
    pub http: HttpSettings,
}

/// Limits that keep slow or idle clients from starving others.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Seconds within which a request head must arrive.
    pub http_head_timeout: f64,
    /// Seconds within which a request body must arrive.
    pub http_body_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    pub http_keep_alive: f64,
}

impl HttpSettings {
    pub fn head_timeout(&self) -> Duration {
        seconds(self.http_head_timeout)
    }

    pub fn body_timeout(&self) -> Duration {
        seconds(self.http_body_timeout)
    }

    pub fn keep_alive(&self) -> Duration {
        seconds(self.http_keep_alive)
    }
}

impl Settings {
    /// Reads SPEC's variables; unset ones take their documented defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        with_http_defaults(Config::builder())?
            .set_default("user_info_host", "0.0.0.0")?
            .set_default("user_info_port", 9810)?
            .set_default(
                "database_url",
                "postgres://postgres:postgres@127.0.0.1:5432/user_info",
            )?
            .set_default("database_pool_size", 10)?
            .set_default("database_connect_timeout", 5)?
            .set_default("database_query_timeout", 10)?
            .add_source(Environment::default().try_parsing(true))
            .build()?
            .try_deserialize()
    }

    pub fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database_url.clone(),
            application_name: "user-info",
            pool_size: self.database_pool_size as usize,
            connect_timeout: seconds(self.database_connect_timeout),
            query_timeout: seconds(self.database_query_timeout),
        }
    }
}

/// The defaults of [`HttpSettings`], shared by every service's settings.
pub fn with_http_defaults(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    builder
        .set_default("http_head_timeout", 10)?
        .set_default("http_body_timeout", 30)?
        .set_default("http_keep_alive", 60)
}

/// A duration in (possibly fractional) seconds; nonsense values become zero.
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

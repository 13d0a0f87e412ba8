//! Connecting to PostgreSQL: `DATABASE_URL` read the way libpq reads it, TLS
//! modes included, but spoken by tokio-postgres, so that every query runs on the
//! async executor instead of parking a thread per query.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and nothing about
//! certificates; libpq's `sslmode` and `sslrootcert` are therefore taken out of
//! the URL here and turned into the TLS connector's settings:
//!
//! | `sslmode` | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | when the server offers it | no |
//! | `require` | always | only against `sslrootcert`, when given (as libpq) |
//! | `verify-ca` | always | chain, against `sslrootcert` or the system's roots |
//! | `verify-full` | always | chain and host name |

use std::borrow::Cow;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use percent_encoding::percent_decode_str;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode;

/// How to reach the database: the parsed URL and its TLS connector.
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(
        "DATABASE_URL: unsupported sslmode {0:?} (disable, allow, prefer, require, verify-ca or verify-full)"
    )]
    SslMode(String),
    #[error("DATABASE_URL: cannot read sslrootcert {path:?}: {source}")]
    RootCert {
        path: String,
        source: std::io::Error,
    },
    #[error("DATABASE_URL: {0}")]
    Tls(#[from] native_tls::Error),
    #[error("DATABASE_URL: {0}")]
    Invalid(#[from] tokio_postgres::Error),
}

/// What libpq's `sslmode` asks of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndHost,
}

impl Connector {
    /// Parses a libpq-style URL (`postgres://user:password@host:port/db?...`).
    pub fn parse(url: &str, application_name: &str) -> Result<Self, UrlError> {
        let (url, sslmode, root_cert) = take_tls_parameters(url);
        let (mode, mut verify) = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, Verify::Nothing),
            "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::ChainAndHost),
            other => return Err(UrlError::SslMode(other.to_owned())),
        };
        let mut builder = native_tls::TlsConnector::builder();
        match root_cert.as_deref() {
            None | Some("system") => {}
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| UrlError::RootCert {
                    path: path.to_owned(),
                    source,
                })?;
                for certificate in split_pem(&pem) {
                    builder.add_root_certificate(native_tls::Certificate::from_pem(certificate)?);
                }
                // libpq: with a root certificate at hand, `require` checks the chain.
                if verify == Verify::Nothing && mode == SslMode::Require {
                    verify = Verify::Chain;
                }
            }
        }
        builder
            .danger_accept_invalid_certs(verify == Verify::Nothing)
            .danger_accept_invalid_hostnames(verify != Verify::ChainAndHost);
        let mut config: tokio_postgres::Config = url.parse()?;
        config.ssl_mode(mode);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        Ok(Self {
            config,
            tls: MakeTlsConnector::new(builder.build()?),
        })
    }

    /// Opens one connection; its I/O is driven by a task on the current runtime.
    pub async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|error| ConnectionError::BadConnection(service_kit::error_chain(&error)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

impl Connector {
    /// A plain tokio-postgres client, for the rare work whose errors must
    /// carry the SQLSTATE (diesel's do not).
    pub async fn connect_raw(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "database connection ended");
            }
        });
        Ok(client)
    }
}

/// Splits `sslmode` and `sslrootcert` off a URL's query string; everything else
/// is left for tokio-postgres to read (or refuse).
fn take_tls_parameters(url: &str) -> (Cow<'_, str>, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (Cow::Borrowed(url), None, None);
    };
    let (mut sslmode, mut root_cert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => sslmode = Some(decoded()),
            "sslrootcert" => root_cert = Some(decoded()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (Cow::Owned(url), sslmode, root_cert)
}

/// `DATABASE_URL` fit to be shown: the password of its user part and of a
/// `password` parameter replaced by `***`; in libpq's `key=value` form, the
/// value of `password`. When in doubt it hides more (the user part ends at the
/// last `@`, so a password holding a stray `@` is still hidden whole).
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_value(url);
    };
    let mut shown = format!("{scheme}://");
    let rest = match rest.rsplit_once('@') {
        Some((credentials, rest)) => {
            match credentials.split_once(':') {
                Some((user, _)) => shown.push_str(&format!("{user}:***")),
                None => shown.push_str(credentials),
            }
            shown.push('@');
            rest
        }
        None => rest,
    };
    match rest.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&format!("{path}?{}", pairs.join("&")));
        }
        None => shown.push_str(rest),
    }
    shown
}

/// libpq's `key=value` form with the value of every `password` replaced: up to
/// the next space, or to the closing quote of a quoted value.
fn redact_key_value(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("password") {
        let after_key = &rest[at + "password".len()..];
        let Some(value) = after_key.trim_start().strip_prefix('=') else {
            shown.push_str(&rest[..at + "password".len()]);
            rest = after_key;
            continue;
        };
        shown.push_str(&rest[..at]);
        shown.push_str("password=***");
        let value = value.trim_start();
        rest = match value.strip_prefix('\'') {
            Some(quoted) => {
                let mut escaped = false;
                let end = quoted.char_indices().find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                });
                end.map_or("", |(at, _)| &quoted[at + 1..])
            }
            None => value
                .find(char::is_whitespace)
                .map_or("", |end| &value[end..]),
        };
    }
    shown.push_str(rest);
    shown
}

/// The PEM blocks of a certificate bundle, one per certificate.
fn split_pem(pem: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    let starts: Vec<usize> = pem
        .windows(BEGIN.len())
        .enumerate()
        .filter(|(_, window)| *window == BEGIN)
        .map(|(at, _)| at)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| &pem[start..starts.get(i + 1).copied().unwrap_or(pem.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let (url, mode, root) = take_tls_parameters(
            "postgres://u:p@db:5432/app?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(url, "postgres://u:p@db:5432/app?connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (url, mode, root) = take_tls_parameters("postgres://u:p@db/app");
        assert_eq!(
            (url.as_ref(), mode, root),
            ("postgres://u:p@db/app", None, None)
        );
    }

    #[test]
    fn every_libpq_sslmode_is_understood_and_others_refused() {
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let url = format!("postgres://u:p@db/app?sslmode={mode}");
            assert!(Connector::parse(&url, "test").is_ok(), "{mode}");
        }
        let refused = Connector::parse("postgres://u:p@db/app?sslmode=sometimes", "test");
        assert!(matches!(refused, Err(UrlError::SslMode(mode)) if mode == "sometimes"));
    }

    #[test]
    fn a_missing_root_certificate_is_a_startup_error_naming_the_file() {
        let error = Connector::parse(
            "postgres://u:p@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "test",
        )
        .err()
        .map(|error| error.to_string());
        assert!(error.is_some_and(|error| error.contains("/nonexistent/ca.pem")));
    }

    #[test]
    fn a_shown_url_never_holds_the_password() {
        for (url, shown) in [
            (
                "postgres://user_info:s3cret@db.internal:5432/user_info?sslmode=verify-full",
                "postgres://user_info:***@db.internal:5432/user_info?sslmode=verify-full",
            ),
            ("postgresql://u:p%40ss@db/app", "postgresql://u:***@db/app"),
            ("postgres://u:s3cret@x@db/app", "postgres://u:***@db/app"),
            ("postgres://u@db/app", "postgres://u@db/app"),
            ("postgres://db/app", "postgres://db/app"),
            (
                "postgres://u@db/app?password=s3cret&connect_timeout=3",
                "postgres://u@db/app?password=***&connect_timeout=3",
            ),
            (
                "host=db user=u password=s3cret dbname=app",
                "host=db user=u password=*** dbname=app",
            ),
            (
                r"host=db password = 's3 cr\'et' dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("host=db password=s3cret", "host=db password=***"),
        ] {
            assert_eq!(redact_password(url), shown, "{url}");
        }
    }

    #[test]
    fn a_bundle_splits_into_its_certificates() {
        let bundle = b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
        let parts = split_pem(bundle);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with(b"-----BEGIN CERTIFICATE-----\nB"));
    }
}

//! Prometheus metrics of user-info, served on `/metrics`: requests by route
//! and status (count and duration), the database pools, the process; every
//! name starts with `user_info_`.

use service_kit::http::HttpMetrics;
use service_kit::metrics::Registry;
use user_store::Database;
use user_store::metrics::PoolGauges;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
}

impl Metrics {
    /// Registers every metric of the process; `database` is the one whose
    /// pools the gauges add up.
    pub fn new(database: &Database) -> Result<Self, prometheus::Error> {
        let registry = Registry::new("user_info")?;
        let http = HttpMetrics::register(&registry)?;
        PoolGauges::register(&registry, database)?;
        Ok(Self { registry, http })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

//! The pool's gauges, read when `/metrics` is scraped.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};
use service_kit::metrics::Registry;

use crate::Database;

/// `<prefix>_db_pool_max_size`, `_size` (connections open), `_available`
/// (open and idle) and `_waiting` (operations waiting for a connection), over
/// every pool of the database.
#[derive(Clone)]
pub struct PoolGauges {
    database: Database,
    max_size: IntGauge,
    size: IntGauge,
    available: IntGauge,
    waiting: IntGauge,
}

impl PoolGauges {
    pub fn register(registry: &Registry, database: &Database) -> Result<(), prometheus::Error> {
        let gauge =
            |name: &str, help: &str| IntGauge::with_opts(Opts::new(registry.name(name), help));
        registry.register(Self {
            database: database.clone(),
            max_size: gauge(
                "db_pool_max_size",
                "Connections the database pools may open (DATABASE_POOL_SIZE and the process's own)",
            )?,
            size: gauge("db_pool_size", "Database connections open")?,
            available: gauge("db_pool_available", "Database connections open and idle")?,
            waiting: gauge(
                "db_pool_waiting",
                "Database operations waiting for a connection",
            )?,
        })?;
        Ok(())
    }

    fn gauges(&self) -> [&IntGauge; 4] {
        [&self.max_size, &self.size, &self.available, &self.waiting]
    }
}

impl Collector for PoolGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges().into_iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = self.database.pool_status();
        let value = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.max_size.set(value(status.max_size));
        self.size.set(value(status.size));
        self.available.set(value(status.available));
        self.waiting.set(value(status.waiting));
        self.gauges()
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}

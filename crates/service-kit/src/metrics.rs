//! Prometheus metrics, one naming scheme for every process: each metric name
//! starts with the process's prefix (`user_info_`, `consumer_`, `enricher_`),
//! counters end in `_total` and durations are `_seconds` histograms. A
//! [`Registry`] refuses a metric that breaks the scheme, so a process with one
//! does not start (and its tests fail).
//!
//! Every process has a registry of its own (tests run many apps in one
//! process) holding, besides its own metrics, the process collector (CPU
//! seconds, resident memory, open file descriptors; Linux only) under its
//! prefix.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{Encoder, TextEncoder};

pub use prometheus::TEXT_FORMAT;

/// A process's metrics: what `/metrics` shows, and the catalogue of every
/// metric name it can show (the dashboards and alert rules are checked
/// against it).
#[derive(Clone)]
pub struct Registry {
    registry: prometheus::Registry,
    namespace: &'static str,
    /// A clone of every collector, to list the families that have no sample
    /// yet (a labelled metric before its first use), which `gather` leaves out.
    collectors: Arc<Mutex<Vec<Box<dyn Collector>>>>,
}

impl Registry {
    /// A registry for the process whose metric names start with
    /// `<namespace>_`, with the process collector registered.
    pub fn new(namespace: &'static str) -> Result<Self, prometheus::Error> {
        let registry = Self {
            registry: prometheus::Registry::new(),
            namespace,
            collectors: Arc::default(),
        };
        #[cfg(target_os = "linux")]
        {
            use prometheus::process_collector::ProcessCollector;
            let process = || ProcessCollector::new(std::process::id() as i32, namespace);
            registry.add(Box::new(process()), Box::new(process()))?;
        }
        Ok(registry)
    }

    /// The prefix of every metric name, without its `_`.
    pub fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// `<namespace>_<name>`.
    pub fn name(&self, name: &str) -> String {
        format!("{}_{name}", self.namespace)
    }

    /// Registers a metric (or any collector) and hands it back; refuses one
    /// whose name breaks the scheme.
    pub fn register<C: Collector + Clone + 'static>(
        &self,
        collector: C,
    ) -> Result<C, prometheus::Error> {
        self.add(Box::new(collector.clone()), Box::new(collector.clone()))?;
        Ok(collector)
    }

    /// Registers `collector`, and `twin` (the same metrics) for the catalogue.
    fn add(
        &self,
        collector: Box<dyn Collector>,
        twin: Box<dyn Collector>,
    ) -> Result<(), prometheus::Error> {
        for desc in collector.desc() {
            self.check_prefix(&desc.fq_name)?;
        }
        for family in collector.collect() {
            check_suffix(family.name(), family.get_field_type())?;
        }
        self.registry.register(collector)?;
        self.collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(twin);
        Ok(())
    }

    fn check_prefix(&self, name: &str) -> Result<(), prometheus::Error> {
        if name
            .strip_prefix(self.namespace)
            .is_some_and(|rest| rest.starts_with('_'))
        {
            Ok(())
        } else {
            Err(refusal(
                name,
                &format!("must start with {}_", self.namespace),
            ))
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }

    /// Every series name this registry can expose, samples or not: a counter
    /// or gauge by its name, a histogram by its `_bucket`, `_sum` and `_count`
    /// series (a summary by its name, `_sum` and `_count`).
    pub fn catalogue(&self) -> Vec<String> {
        let collectors = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|collector| collector.collect())
            .flat_map(|family| {
                let name = family.name().to_owned();
                match family.get_field_type() {
                    MetricType::HISTOGRAM => vec![
                        format!("{name}_bucket"),
                        format!("{name}_sum"),
                        format!("{name}_count"),
                    ],
                    MetricType::SUMMARY => {
                        vec![format!("{name}_sum"), format!("{name}_count"), name]
                    }
                    _ => vec![name],
                }
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn check_suffix(name: &str, kind: MetricType) -> Result<(), prometheus::Error> {
    let counter = kind == MetricType::COUNTER;
    if counter && !name.ends_with("_total") {
        return Err(refusal(name, "a counter's name must end in _total"));
    }
    if !counter && name.ends_with("_total") {
        return Err(refusal(name, "only a counter's name ends in _total"));
    }
    Ok(())
}

fn refusal(name: &str, rule: &str) -> prometheus::Error {
    prometheus::Error::Msg(format!("metric {name}: {rule}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

    #[test]
    fn names_must_follow_the_scheme() {
        let registry = Registry::new("svc").unwrap();
        assert!(
            registry
                .register(IntCounter::new("svc_things_total", "t").unwrap())
                .is_ok()
        );
        for wrong in [
            IntCounter::new("things_total", "no prefix").unwrap(),
            IntCounter::new("svcx_things_total", "another prefix").unwrap(),
            IntCounter::new("svc_things", "a counter without _total").unwrap(),
        ] {
            assert!(registry.register(wrong).is_err());
        }
        assert!(
            registry
                .register(IntGauge::new("svc_level_total", "a gauge with _total").unwrap())
                .is_err()
        );
    }

    #[test]
    fn the_catalogue_lists_unused_labelled_metrics_histogram_series_and_process_metrics() {
        let registry = Registry::new("svc").unwrap();
        registry
            .register(IntCounterVec::new(Opts::new("svc_calls_total", "c"), &["route"]).unwrap())
            .unwrap();
        registry
            .register(Histogram::with_opts(HistogramOpts::new("svc_wait_seconds", "w")).unwrap())
            .unwrap();
        let catalogue = registry.catalogue();
        for name in [
            "svc_calls_total",
            "svc_wait_seconds_bucket",
            "svc_wait_seconds_sum",
            "svc_wait_seconds_count",
            "svc_process_cpu_seconds_total",
            "svc_process_resident_memory_bytes",
            "svc_process_open_fds",
        ] {
            assert!(catalogue.iter().any(|n| n == name), "{name}: {catalogue:?}");
        }
        let text = registry.render().unwrap();
        assert!(
            text.contains("svc_process_resident_memory_bytes "),
            "{text}"
        );
        assert!(!text.contains("svc_calls_total"), "no sample yet: {text}");
    }
}

mod dummy;
mod health;
mod metrics;
mod users;

pub use dummy::{ReferenceEnrichment, dummy_enrich, reference_enrichment};
pub use health::{Environment, health};
pub use metrics::metrics;
pub use users::enrich_user;

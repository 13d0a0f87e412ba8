pub mod dummy;
pub mod health;
pub mod metrics;
pub mod users;

pub use dummy::{ReferenceEnrichment, UserCategory, dummy_enrich, reference_enrichment};
pub use health::{Environment, health, ready};
pub use metrics::metrics;
pub use users::enrich_user;

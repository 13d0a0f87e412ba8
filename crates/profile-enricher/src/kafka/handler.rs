//! What one input record becomes - decided without a broker, through the same
//! code as `POST /users`: the same parsing and validation, the same
//! [`EnrichmentClient::enrich`], the same answer body.

use domain::Profile;

use crate::enrichment::{EnrichmentClient, EnrichmentError};
use crate::routes::users::answer_body;

pub enum Verdict {
    /// The `POST /users` 200 body, keyed by the profile's userId.
    Answer { key: String, body: Vec<u8> },
    /// The record itself is at fault (invalid, or refused by a source): it goes
    /// to the dead-letter topic with this reason (field and rule, never a value).
    DeadLetter(String),
    /// A failure that may pass (outage, deadline, open breaker, no slot): try
    /// again later, never dead-letter.
    Later(EnrichmentError),
}

pub async fn handle(client: &EnrichmentClient, value: Option<&[u8]>) -> Verdict {
    let Some(value) = value else {
        return Verdict::DeadLetter("tombstone: a record without a value".to_owned());
    };
    let profile = match Profile::from_json(value) {
        Ok(profile) => profile,
        Err(error) => return Verdict::DeadLetter(error.to_string()),
    };
    match client.enrich(&profile).await {
        Ok(enrichment) => match answer_body(&profile, &enrichment) {
            Ok(body) => Verdict::Answer {
                key: profile.user_id().to_owned(),
                body,
            },
            Err(error) => Verdict::DeadLetter(format!("the answer cannot be encoded: {error}")),
        },
        Err(error) if is_transient(&error) => Verdict::Later(error),
        Err(error) => Verdict::DeadLetter(error.to_string()),
    }
}

/// Whether asking again later may succeed: everything but a source's refusal
/// (a 4xx other than 401, 403, 408 and 429) or an answer that is not a JSON
/// object. Exhausted retries and budgets count as transient: they are what an
/// outage looks like. So do wrong credentials (401, 403): the profile is not
/// at fault, and the record waits until the deployment's key works.
pub fn is_transient(error: &EnrichmentError) -> bool {
    match error {
        EnrichmentError::Busy { .. }
        | EnrichmentError::CircuitOpen { .. }
        | EnrichmentError::Unauthorized { .. }
        | EnrichmentError::RateLimited { .. }
        | EnrichmentError::Paused { .. }
        | EnrichmentError::DeadlineExceeded { .. }
        | EnrichmentError::RetriesExhausted { .. }
        | EnrichmentError::RetryBudgetExhausted { .. }
        | EnrichmentError::Unrecoverable(_) => true,
        EnrichmentError::Rejected { .. }
        | EnrichmentError::NotAnObject
        | EnrichmentError::AnswerTooLarge
        | EnrichmentError::Encode(_) => false,
        EnrichmentError::Source { error, .. } => is_transient(error),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn outages_are_transient_and_refusals_are_not() {
        let deadline = EnrichmentError::DeadlineExceeded {
            deadline: Duration::from_secs(1),
            attempts: 2,
            last: "503".to_owned(),
        };
        let open = EnrichmentError::CircuitOpen {
            retry_after: Duration::from_secs(5),
            attempts: 0,
        };
        let refused = EnrichmentError::Rejected {
            status: StatusCode::BAD_REQUEST,
        };
        assert!(is_transient(&deadline));
        assert!(is_transient(&open));
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            assert!(is_transient(&EnrichmentError::Unauthorized { status }));
        }
        assert!(!is_transient(&refused));
        assert!(!is_transient(&EnrichmentError::NotAnObject));
        let named = |error| EnrichmentError::Source {
            name: "geo".to_owned(),
            error: Box::new(error),
        };
        assert!(is_transient(&named(open.clone())));
        assert!(!is_transient(&named(refused.clone())));
    }
}

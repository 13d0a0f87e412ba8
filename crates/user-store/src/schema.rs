//! The `user_info` table as diesel sees it, and a stored user.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

diesel::table! {
    user_info (user_id) {
        user_id -> Uuid,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        phone_number -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> BigInt,
    }
}

/// A stored user, as answered by the API.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = user_info, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub user_id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// 1 when created, +1 on every change (HTTP or Kafka); the strong ETag
    /// `"<version>"`.
    pub version: i64,
}

diesel::table! {
    consumer_offsets (group_id, topic, partition) {
        group_id -> Text,
        topic -> Text,
        partition -> Integer,
        next_offset -> BigInt,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        fingerprint -> Bytea,
        status -> SmallInt,
        response_body -> Text,
        etag -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        user_id -> Nullable<Uuid>,
    }
}

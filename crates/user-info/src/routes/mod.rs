pub mod health;
pub mod metrics;
pub mod user;

use actix_web::web;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/user")
            .route(web::post().to(user::post_user))
            .route(web::get().to(user::get_user))
            .route(web::patch().to(user::patch_user))
            .route(web::delete().to(user::delete_user)),
    )
    .service(web::resource("/health").route(web::get().to(health::health)))
    .service(web::resource("/ready").route(web::get().to(health::ready)))
    .service(web::resource("/metrics").route(web::get().to(metrics::metrics)))
    .service(web::resource("/openapi.json").route(web::get().to(crate::openapi::openapi_json)))
    .service(web::resource("/docs").route(web::get().to(service_kit::http::docs)));
}

//! The demo CRM REST API: customers (with payment cards on the single-record view) and an admin
//! area that policy keeps agents out of.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data;

pub async fn list() -> Response {
    Json(data::customers()).into_response()
}

pub async fn get(Path(id): Path<String>) -> Response {
    match parse_id(&id).and_then(data::customer_detail) {
        Some(detail) => Json(detail).into_response(),
        None => not_found(&id),
    }
}

/// Answers as if the record were deleted; nothing is stored, so the next GET still finds it
/// (the demo only needs to show whether the call got through).
pub async fn delete(Path(id): Path<String>) -> Response {
    match parse_id(&id).filter(|id| data::customer(*id).is_some()) {
        Some(id) => Json(json!({ "deleted": id })).into_response(),
        None => not_found(&id),
    }
}

/// Whether a path is in the admin area: `/api/admin` and anything below it, at any depth.
pub fn is_admin_path(path: &str) -> bool {
    path == "/api/admin" || path.starts_with("/api/admin/")
}

/// Any method on an admin path succeeds: the demo upstream is the unprotected system that
/// Interlock has to guard.
pub fn admin(path: &str) -> Response {
    Json(json!({ "admin": true, "path": path })).into_response()
}

fn parse_id(id: &str) -> Option<u32> {
    id.parse().ok()
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "customer not found", "id": id })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths() {
        assert!(is_admin_path("/api/admin"));
        assert!(is_admin_path("/api/admin/"));
        assert!(is_admin_path("/api/admin/users/1/roles"));
        assert!(!is_admin_path("/api/administrator"));
        assert!(!is_admin_path("/api/customers"));
    }
}

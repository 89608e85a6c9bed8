//! `/customers`: list (filter, paginate), upsert one or a batch, get, replace
//! and delete. Staff tokens see and change only customers of their regions:
//! another region's customer is a 404 and lists leave it out.

use super::auth::Caller;
use super::Current;
use super::{body_of, parse_body, visible_customer, ApiError, ErrorBody, OneOrMany};
use crate::customer::{Customer, CustomerPatch};
use crate::engine::{Deleted, Herald, UpsertOutcome, WriteError};
use crate::live::Live;
use crate::store::customers::{self, CustomerFilter};
use crate::store::tokens::Role;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_customers, upsert_customers))
        .routes(routes!(get_customer, put_customer, delete_customer))
}

/// Query of `GET /customers`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CustomerQuery {
    /// Only this lifecycle state.
    state: Option<String>,
    /// Only this region.
    region: Option<String>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this external id: the previous page's `next_after`.
    after: Option<String>,
}

/// One page of customers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct CustomerPage {
    /// Customers ordered by external id.
    customers: Vec<Customer>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// The body of `POST /customers`: one customer or an array of them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the body; `parse_body` reads it, naming a bad item
pub(super) enum CustomerUpserts {
    /// One customer.
    One(Box<CustomerPatch>),
    /// Several, each answered in `results`, in order.
    Many(Vec<CustomerPatch>),
}

/// What an upsert answers: the customer as stored, or for ingest tokens
/// (which may not read customers) only the id and what changed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum Upserted {
    /// Admin and staff tokens.
    Customer(Box<UpsertOutcome>),
    /// Ingest tokens.
    Receipt(UpsertReceipt),
}

/// The answer to an ingest token's upsert.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UpsertReceipt {
    /// The customer's external id.
    external_id: String,
    /// Whether it was new.
    created: bool,
    /// What changed.
    changed: Vec<String>,
}

/// The answer to `POST /customers`: one answer for one customer, or
/// `results` for an array.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum UpsertAnswer {
    /// The body was one customer.
    One(Upserted),
    /// The body was an array.
    Many(UpsertResults),
}

/// Each item of an array of customers, answered in order.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UpsertResults {
    /// One entry per item: `{"ok": ...}` or an error body.
    results: Vec<UpsertItem>,
}

/// The answer for one item of an array.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum UpsertItem {
    /// Stored.
    Ok {
        /// The answer, as for a single customer.
        ok: Upserted,
    },
    /// Refused (this item only; the others are still applied).
    Err(ErrorBody),
}

/// The body of `PUT /customers/{external_id}`: a customer whose
/// `external_id` may be left out (the path names it; if given it must match).
pub(super) struct CustomerReplace;

impl utoipa::PartialSchema for CustomerReplace {
    fn schema() -> RefOr<Schema> {
        let mut schema = <CustomerPatch as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.retain(|field| field != "external_id");
            if let Some(RefOr::T(Schema::Object(id))) = object.properties.get_mut("external_id") {
                id.description = Some("Optional: if given, the same as the path's.".into());
            }
            object.description = Some(
                "A customer; `external_id` may be left out (the path names it) and, if given, must match the path. Fields left out keep their stored value; `null` clears one.".into(),
            );
        }
        schema
    }
}

impl utoipa::ToSchema for CustomerReplace {}

/// Clamp a page size, or say what is allowed.
pub(super) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and 1000 (got {n})"),
        )),
    }
}

/// List customers.
#[utoipa::path(get, path = "/customers", tag = "customers", params(CustomerQuery),
    responses((status = 200, body = CustomerPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_customers(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<CustomerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CustomerPage>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let mut tx = h.store.read().await?;
    let list = customers::list(
        &mut tx,
        &CustomerFilter {
            limit,
            after: q.after,
            state: q.state,
            region: q.region,
            scope: caller.region_scope().map(<[String]>::to_vec),
        },
    )
    .await?;
    let next_after = (list.len() as i64 == limit)
        .then(|| list.last().map(|c| c.external_id.clone()))
        .flatten();
    Ok(Json(CustomerPage {
        customers: list,
        next_after,
    }))
}

async fn upsert_one(
    h: &Herald,
    caller: &Caller,
    patch: &CustomerPatch,
) -> Result<UpsertOutcome, WriteError> {
    let deleted = match caller.role {
        Role::Ingest => Deleted::Refuse,
        Role::Admin | Role::Staff => Deleted::Revive,
    };
    h.upsert_customer_as(patch, caller.region_scope(), deleted)
        .await
}

/// What the caller gets back for an upsert: ingest tokens, which may not
/// read customers, get only the id and what changed.
fn answer(caller: &Caller, outcome: UpsertOutcome) -> Upserted {
    if caller.role == Role::Ingest {
        Upserted::Receipt(UpsertReceipt {
            external_id: outcome.customer.external_id,
            created: outcome.created,
            changed: outcome.changed,
        })
    } else {
        Upserted::Customer(Box::new(outcome))
    }
}

/// Create or update one customer (an object) or many (an array; each item
/// answered in `results`, in order).
#[utoipa::path(post, path = "/customers", tag = "customers",
    request_body(content = CustomerUpserts, description = "One customer, or an array of them. Fields left out keep their stored value; `null` clears one."),
    responses((status = 200, body = UpsertAnswer, description = "The customer as stored (ingest tokens: its id and what changed); for an array `{\"results\": [{\"ok\": ...} | {\"error\": ...}]}`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "A staff token writing another region's customer"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upsert_customers(
    Current(h): Current,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UpsertAnswer>, ApiError> {
    let body = body_of(body)?;
    match parse_body::<CustomerPatch>(&body, "customer")? {
        OneOrMany::One(patch) => {
            let outcome = upsert_one(&h, &caller, &patch).await?;
            Ok(Json(UpsertAnswer::One(answer(&caller, outcome))))
        }
        OneOrMany::Many(patches) => {
            let mut results = Vec::with_capacity(patches.len());
            for patch in &patches {
                results.push(match upsert_one(&h, &caller, patch).await {
                    Ok(outcome) => UpsertItem::Ok {
                        ok: answer(&caller, outcome),
                    },
                    Err(WriteError::Internal(e)) => return Err(WriteError::Internal(e).into()),
                    Err(e) => UpsertItem::Err(ApiError::from(e).body()),
                });
            }
            Ok(Json(UpsertAnswer::Many(UpsertResults { results })))
        }
    }
}

/// Replace or create the customer at this path (the body's external_id, if
/// given, must match).
#[utoipa::path(put, path = "/customers/{external_id}", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    request_body = CustomerReplace,
    responses((status = 200, body = UpsertOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_customer(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UpsertOutcome>, ApiError> {
    caller.require(Role::Staff)?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    let body = body_of(body)?;
    let mut value: Value = serde_json::from_slice(&body).map_err(super::not_json)?;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    match object.get("external_id") {
        None => {
            object.insert("external_id".into(), Value::String(external_id));
        }
        Some(Value::String(id)) if id == &external_id => {}
        Some(Value::String(id)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("external_id `{id}` in the body differs from `{external_id}` in the path"),
            ))
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("external_id must be a string (got {other}); leave it out or write \"{external_id}\""),
            ))
        }
    }
    let patch: CustomerPatch = serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a valid customer: {e}"),
        )
    })?;
    Ok(Json(upsert_one(&h, &caller, &patch).await?))
}

/// One customer.
#[utoipa::path(get, path = "/customers/{external_id}", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    responses((status = 200, body = Customer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_customer(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Customer>, ApiError> {
    caller.require_reader()?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    Ok(Json(visible_customer(&h, &caller, &external_id).await?))
}

/// Delete a customer: pending reminders are cancelled; history is kept.
#[utoipa::path(delete, path = "/customers/{external_id}", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_customer(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Staff)?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    h.delete_customer_in(&external_id, caller.region_scope())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

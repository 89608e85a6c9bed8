//! `GET /strategy`: the strategy and channels in force — what each rule
//! waits for, where it sends, its goal and follow-up steps — and the
//! fingerprint the schedule was planned with.

use super::auth::Caller;
use super::Current;
use super::{ApiError, ErrorBody};
use crate::channels::Delivery;
use crate::live::Live;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new().routes(routes!(show_strategy))
}

/// The loaded strategy.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct StrategyView {
    /// SHA-256 of the strategy the schedule was planned with.
    fingerprint: Option<String>,
    /// Zone of customers who have none.
    default_timezone: String,
    /// Rules in file order.
    rules: Vec<RuleView>,
    /// Channels loaded (enabled) and disabled.
    channels: Vec<ChannelView>,
}

/// One rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RuleView {
    id: String,
    /// What makes it fire, in words.
    trigger: String,
    /// Channels in order of preference.
    channels: Vec<String>,
    /// Whether it has a `when` condition.
    has_condition: bool,
    /// Goal event kind that ends it, if any.
    goal: Option<String>,
    /// Number of follow-up steps.
    steps: usize,
    /// Exempt from caps and windows.
    transactional: bool,
    /// Translations besides the default text.
    locales: Vec<String>,
    /// Whether a targeting plugin decides who gets it.
    targeting: bool,
}

/// One channel.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ChannelView {
    name: String,
    /// The plugin (by its own name) or built-in carrying it.
    provider: Option<String>,
    /// Built-in (inbox, task) or a plugin.
    kind: String,
    /// `false` when the config disables it.
    enabled: bool,
}

/// The strategy and channels in force.
#[utoipa::path(get, path = "/strategy", tag = "strategy",
    responses((status = 200, body = StrategyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn show_strategy(
    Current(h): Current,
    caller: Caller,
) -> Result<Json<StrategyView>, ApiError> {
    caller.require_reader()?;
    let fingerprint = crate::store::meta::get(&h.store, "strategy_fingerprint").await?;
    let rules = h
        .strategy
        .rules
        .iter()
        .map(|r| RuleView {
            id: r.id.clone(),
            trigger: r.trigger.describe(),
            channels: r.channels.clone(),
            has_condition: r.has_condition,
            goal: r.goal.as_ref().map(|g| g.event.clone()),
            steps: r.steps.len(),
            transactional: r.transactional,
            locales: r.locales.clone(),
            targeting: h.targeting.contains_key(&r.id),
        })
        .collect();
    let mut channels: Vec<ChannelView> = h
        .channels
        .iter()
        .map(|c| ChannelView {
            name: c.name.clone(),
            provider: Some(c.provider.clone()),
            kind: match c.delivery {
                Delivery::Plugin { .. } => "plugin".into(),
                _ => "builtin".into(),
            },
            enabled: true,
        })
        .chain(h.channels.disabled().map(|name| ChannelView {
            name: name.to_string(),
            provider: None,
            kind: "disabled".into(),
            enabled: false,
        }))
        .collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(StrategyView {
        fingerprint,
        default_timezone: h.strategy.default_timezone.clone(),
        rules,
        channels,
    }))
}

//! `herald-cadence`: a targeting plugin that learns each customer's own
//! interval between events of one kind (purchases by default) and lets a
//! reminder out only once the first expected event has been missed.
//!
//! This file owns the WebAssembly side: the `herald:plugin/targeting-plugin`
//! bindings, `describe`, and turning the host's arguments into the pure rule
//! of [`cadence`] and its verdict back into a `decision`.

mod cadence;

wit_bindgen::generate!({
    path: "../../wit",
    world: "herald:plugin/targeting-plugin",
});

use exports::herald::plugin::targeting::{CustomerView, Decision, Event, Guest, Variable};
use herald::plugin::types::{AddressKind, PluginInfo, Setting, SettingSpec};

struct Plugin;

fn spec(key: &str, description: &str) -> SettingSpec {
    SettingSpec {
        key: key.to_string(),
        description: description.to_string(),
        secret: false,
        required: false,
    }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "cadence".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            settings: vec![
                spec(
                    "kind",
                    "The event kind whose cadence is learnt (default \"purchase\")",
                ),
                spec(
                    "min_events",
                    "Fewest events (same-day events count once) needed to learn a cadence; fewer → skipped (default 3, at least 2)",
                ),
                spec(
                    "tolerance",
                    "Fraction of the usual interval a customer may be late before the reminder goes out (default 0.2)",
                ),
                spec(
                    "max_interval_days",
                    "Skip customers whose usual interval is longer than this many days (default: no limit)",
                ),
            ],
            accepts_callbacks: false,
        }
    }

    fn evaluate(
        settings: Vec<Setting>,
        _customer: CustomerView,
        history: Vec<Event>,
        now: i64,
    ) -> Decision {
        let settings = match cadence::Settings::parse(
            settings.iter().map(|s| (s.key.as_str(), s.value.as_str())),
        ) {
            Ok(s) => s,
            Err(e) => return Decision::Skip(e),
        };
        let events: Vec<cadence::Event<'_>> = history
            .iter()
            .map(|e| cadence::Event {
                kind: &e.kind,
                at: e.at,
            })
            .collect();
        let verdict = cadence::evaluate(&settings, &events, now);
        drop(events);
        // Each call runs in a fresh instance that is thrown away afterwards,
        // so freeing thousands of small strings one by one only burns fuel.
        std::mem::forget(history);
        match verdict {
            cadence::Verdict::Send(alert) => Decision::Send(
                alert
                    .variables()
                    .into_iter()
                    .map(|(name, value_json)| Variable { name, value_json })
                    .collect(),
            ),
            cadence::Verdict::Skip(reason) => Decision::Skip(reason),
            cadence::Verdict::Defer(at) => Decision::Defer(at),
        }
    }
}

export!(Plugin);

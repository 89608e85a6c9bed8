//! Segments: named conditions over customers' fields, attributes and event
//! history (`[segments.NAME] when = "…"`), compiled with the rules'
//! templates and checked the same way, and whether one customer belongs.
//! Walking the customer base is the engine's business, not this module's.

use super::Strategy;
use crate::config::SegmentSection;
use crate::customer::Customer;
use crate::render::history::History;
use crate::render::{Part, Templates, Vocabulary};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Longest segment name.
const MAX_NAME: usize = 64;

/// One declared segment.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Segment {
    /// Its name.
    pub name: String,
    /// What it is, if the operator said.
    pub description: Option<String>,
    /// Its condition as written.
    pub when: String,
}

/// The template set a segment's condition is compiled under (never a rule
/// id: those cannot contain `:`).
fn template_set(name: &str) -> String {
    format!("segment:{name}")
}

/// Check and compile `[segments]` into `templates`; problems go to `errors`.
pub fn compile(
    sections: &BTreeMap<String, SegmentSection>,
    attributes: &BTreeSet<String>,
    templates: &mut Templates,
    errors: &mut Vec<String>,
) -> Vec<Segment> {
    let vocab = Vocabulary {
        attributes: attributes.clone(),
        has_event: false,
        has_target: false,
        has_history: true,
    };
    let mut out = Vec::new();
    for (name, section) in sections {
        let at = format!("[segments.{name}]");
        let well_formed = super::is_name(name) && name.len() <= MAX_NAME;
        if !well_formed {
            errors.push(format!(
                "{at}: segment names use letters, digits, `-` and `_` (at most {MAX_NAME})"
            ));
            continue;
        }
        let set = template_set(name);
        if let Err(e) = templates.add(&set, Part::When, &section.when, &vocab) {
            errors.push(e.replacen(&format!("rule `{set}`"), &at, 1));
            continue;
        }
        out.push(Segment {
            name: name.clone(),
            description: section.description.clone(),
            when: section.when.clone(),
        });
    }
    out
}

impl Strategy {
    /// The segment called `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Whether `customer`, with these events, is in segment `name` at `now`.
    /// A condition that fails to evaluate is an error, for the record.
    pub fn in_segment(
        &self,
        name: &str,
        customer: &Customer,
        now: DateTime<Utc>,
        events: &History,
    ) -> Result<bool, String> {
        let ctx = crate::render::segment_context(customer, now, events);
        self.templates
            .condition(&template_set(name), &ctx)
            .map_err(|e| {
                e.replacen(
                    &format!("rule `{}`", template_set(name)),
                    &format!("[segments.{name}]"),
                    1,
                )
            })
    }
}

//! Goal stages in the funnel: for the delivered messages of a rule whose
//! goal is an ordered list of events (`download → login → apply →
//! withdraw`), how many customers reached each stage after the message —
//! each stage's event after the previous one's, all within the goal's
//! window from the send — and the conversion from the stage before. Pure
//! counting over what the store read.

use serde::Serialize;
use std::collections::HashMap;

/// One stage of a rule's funnel.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stage {
    /// The stage's event kind.
    pub event: String,
    /// Delivered messages whose customer reached this stage (and every one
    /// before it, in order) within the goal's window.
    pub reached: u64,
    /// reached / the stage before's reached (the first stage: over
    /// delivered).
    pub conversion_rate: Option<f64>,
}

/// A rule's staged goal: its event kinds in order and its window.
#[derive(Debug, Clone)]
pub struct StagedGoal {
    /// The event kinds, in order.
    pub stages: Vec<String>,
    /// How long after the send the stages count, in milliseconds.
    pub within_ms: i64,
}

/// How far each of `sends` (customer, send time in ms) got through `goal`,
/// given each customer's events (kind, time in ms; any order): per stage,
/// how many reached it.
pub fn count(
    goal: &StagedGoal,
    sends: &[(i64, i64)],
    events: &HashMap<i64, Vec<(String, i64)>>,
) -> Vec<Stage> {
    let mut reached = vec![0u64; goal.stages.len()];
    for (customer, sent_at) in sends {
        let mut mine: Vec<&(String, i64)> = events
            .get(customer)
            .map_or(Vec::new(), |e| e.iter().collect());
        mine.sort_by_key(|(_, at)| *at);
        let end = sent_at.saturating_add(goal.within_ms);
        let mut after = *sent_at;
        for (k, stage) in goal.stages.iter().enumerate() {
            let next = mine
                .iter()
                .find(|(kind, at)| kind == stage && *at >= after && *at <= end);
            match next {
                Some((_, at)) => {
                    reached[k] += 1;
                    after = *at;
                }
                None => break,
            }
        }
    }
    let delivered = sends.len() as u64;
    goal.stages
        .iter()
        .enumerate()
        .map(|(k, event)| {
            let before = if k == 0 { delivered } else { reached[k - 1] };
            Stage {
                event: event.clone(),
                reached: reached[k],
                conversion_rate: (before > 0).then(|| reached[k] as f64 / before as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn goal() -> StagedGoal {
        StagedGoal {
            stages: vec!["click".into(), "login".into(), "apply".into()],
            within_ms: 48 * H,
        }
    }

    #[test]
    fn stages_count_in_order_after_the_send_and_within_the_window() {
        let events = HashMap::from([
            // 1: click, login, apply in order: all three.
            (
                1,
                vec![
                    ("apply".into(), 5 * H),
                    ("click".into(), H),
                    ("login".into(), 2 * H),
                ],
            ),
            // 2: login before the click does not count for stage 2.
            (2, vec![("login".into(), H), ("click".into(), 2 * H)]),
            // 3: a click before the send does not count.
            (3, vec![("click".into(), -H), ("login".into(), H)]),
            // 4: apply after the window: two stages.
            (
                4,
                vec![
                    ("click".into(), H),
                    ("login".into(), H),
                    ("apply".into(), 49 * H),
                ],
            ),
        ]);
        let sends = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
        let stages = count(&goal(), &sends, &events);
        let reached: Vec<u64> = stages.iter().map(|s| s.reached).collect();
        assert_eq!(reached, [3, 2, 1]);
        assert_eq!(stages[0].conversion_rate, Some(3.0 / 5.0));
        assert_eq!(stages[1].conversion_rate, Some(2.0 / 3.0));
        assert_eq!(stages[2].conversion_rate, Some(1.0 / 2.0));
    }

    #[test]
    fn nothing_delivered_has_no_rates() {
        let stages = count(&goal(), &[], &HashMap::new());
        assert!(stages
            .iter()
            .all(|s| s.reached == 0 && s.conversion_rate.is_none()));
    }
}

//! Topics: what reminders are about (`[topics.NAME]` with labels by
//! locale), which topic each rule belongs to, and whether a customer's
//! opt-outs stop a rule. Owns the names and labels only: opt-outs are
//! stored by `store::preferences`, and the page that changes them is
//! `api::preferences`.

use super::pick_language;
use crate::config::TopicSection;
use std::collections::{BTreeMap, HashSet};

/// Longest topic name.
const MAX_NAME: usize = 64;

/// One declared topic.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Its name in the file (`marketing`).
    pub name: String,
    labels: BTreeMap<String, String>,
    descriptions: BTreeMap<String, String>,
}

impl Topic {
    /// Its label in `locale` (exact tag, then same language, then English,
    /// then the first given).
    pub fn label(&self, locale: &str) -> &str {
        pick_language(&self.labels, locale).unwrap_or(&self.name)
    }

    /// Its description in `locale`, if it has one.
    pub fn description(&self, locale: &str) -> Option<&str> {
        pick_language(&self.descriptions, locale)
    }
}

/// The strategy's topics, in name order.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    topics: Vec<Topic>,
}

impl Topics {
    /// Check and keep `[topics]`; every problem is pushed to `errors`.
    pub fn compile(sections: &BTreeMap<String, TopicSection>, errors: &mut Vec<String>) -> Topics {
        let mut topics = Vec::new();
        for (name, section) in sections {
            let at = format!("[topics.{name}]");
            let well_formed = super::is_name(name) && name.len() <= MAX_NAME;
            if !well_formed {
                errors.push(format!(
                    "{at}: topic names use letters, digits, `-` and `_` (at most {MAX_NAME})"
                ));
            }
            if section.label.values().all(|l| l.trim().is_empty()) {
                errors.push(format!(
                    "{at}: give the label customers see, e.g. label = {{ en = \"Offers and events\", \"zh-CN\" = \"优惠与活动\" }}"
                ));
            }
            topics.push(Topic {
                name: name.clone(),
                labels: section.label.clone(),
                descriptions: section.description.clone(),
            });
        }
        Topics { topics }
    }

    /// Every topic, in name order.
    pub fn all(&self) -> &[Topic] {
        &self.topics
    }

    /// Whether any topic is declared.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The topic called `name`.
    pub fn get(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The declared names, for error messages.
    pub fn names(&self) -> String {
        if self.topics.is_empty() {
            return "none (declare one under [topics.NAME])".into();
        }
        let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
        names.join(", ")
    }
}

/// Why a customer's opt-outs stop a rule of `topic`, if they do: a
/// transactional rule is never stopped.
pub fn refused(
    topic: Option<&str>,
    transactional: bool,
    opted_out: Option<&HashSet<String>>,
) -> Option<String> {
    let topic = topic?;
    if transactional || !opted_out.is_some_and(|o| o.contains(topic)) {
        return None;
    }
    Some(format!("the customer turned off `{topic}` reminders"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(labels: &[(&str, &str)]) -> TopicSection {
        TopicSection {
            label: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            description: BTreeMap::new(),
        }
    }

    #[test]
    fn labels_follow_the_locale_then_english() {
        let mut errors = Vec::new();
        let sections = BTreeMap::from([(
            "marketing".to_string(),
            section(&[("en", "Offers"), ("zh-CN", "优惠活动")]),
        )]);
        let topics = Topics::compile(&sections, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let t = topics.get("marketing").unwrap();
        assert_eq!(t.label("zh-CN"), "优惠活动");
        assert_eq!(t.label("zh-TW"), "优惠活动");
        assert_eq!(t.label("fr"), "Offers");
        assert_eq!(t.description("en"), None);
    }

    #[test]
    fn bad_names_and_missing_labels_are_refused() {
        let mut errors = Vec::new();
        let sections = BTreeMap::from([
            ("bad name".to_string(), section(&[("en", "x")])),
            ("ok".to_string(), section(&[])),
        ]);
        Topics::compile(&sections, &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("[topics.bad name]"), "{errors:?}");
        assert!(errors[1].contains("give the label"), "{errors:?}");
    }

    #[test]
    fn transactional_rules_and_other_topics_are_not_refused() {
        let out = HashSet::from(["marketing".to_string()]);
        assert!(refused(Some("marketing"), false, Some(&out)).is_some());
        assert_eq!(refused(Some("marketing"), true, Some(&out)), None);
        assert_eq!(refused(Some("service"), false, Some(&out)), None);
        assert_eq!(refused(None, false, Some(&out)), None);
        assert_eq!(refused(Some("marketing"), false, None), None);
    }
}

//! [`AccountAvailability`]: the availability seam of an account as its config describes it.

use assent_core::{
    capability::{Availability, SetupHint},
    model::Kind,
    routing::{AccountRouting, Enablement},
};

/// Routing settings of one account, and the hints `doctor` shows when somebody cannot approve.
/// Channels return it from `ApprovalCapability::availability`, and `doctor` reads the same one
/// without connecting.
#[derive(Debug, Clone)]
pub struct AccountAvailability {
    routing: AccountRouting,
    table: String,
    example: &'static str,
}

impl AccountAvailability {
    /// `routing` of the account configured in `table` (`channels.telegram.accounts.main`);
    /// `example` is an approver id as an operator writes it.
    pub fn new(routing: AccountRouting, table: impl Into<String>, example: &'static str) -> Self {
        Self { routing, table: table.into(), example }
    }

    /// The routing settings.
    pub fn settings(&self) -> &AccountRouting {
        &self.routing
    }

    /// The dotted name of the account's table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Hints for every kind nobody can approve, merged when they name the same key.
    pub fn all_hints(&self) -> Vec<SetupHint> {
        let mut merged: Vec<(SetupHint, Vec<&str>)> = Vec::new();
        for kind in Kind::ALL {
            for hint in self.setup_hints(kind) {
                match merged.iter_mut().find(|(h, _)| h.key == hint.key) {
                    Some((_, kinds)) => kinds.push(kind.as_str()),
                    None => merged.push((hint, vec![kind.as_str()])),
                }
            }
        }
        let every = Kind::ALL.len();
        merged
            .into_iter()
            .map(|(mut hint, kinds)| {
                if kinds.len() == every {
                    hint.why = format!("nobody can approve on {}", self.routing.key);
                }
                hint
            })
            .collect()
    }
}

impl Availability for AccountAvailability {
    fn is_configured(&self) -> bool {
        true
    }

    fn routing(&self) -> AccountRouting {
        self.routing.clone()
    }

    fn setup_hints(&self, kind: Kind) -> Vec<SetupHint> {
        let r = &self.routing;
        let why = format!("nobody can approve {} on {}", kind.as_str(), r.key);
        let hint = |key: &str, example: String| SetupHint {
            key: format!("{}.{key}", self.table),
            example,
            why: why.clone(),
        };
        if r.enabled == Enablement::Off {
            vec![hint("approvals.enabled", "\"auto\"".to_owned())]
        } else if r.approvers.is_empty() {
            vec![hint("approvals.approvers", format!("[\"{}\"]", self.example))]
        } else if !r.kinds.contains(&kind) {
            let mut kinds: Vec<&str> = r.kinds.iter().map(|k| k.as_str()).collect();
            kinds.push(kind.as_str());
            let list = kinds.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
            vec![hint("approvals.kinds", format!("[{list}]"))]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use assent_core::model::{AccountKey, Channel};

    use super::*;

    fn account(approvers: &[&str]) -> AccountAvailability {
        let key = AccountKey::new(Channel::Telegram, "main");
        let routing = AccountRouting::new(key, approvers.iter().map(|a| (*a).to_owned()).collect());
        AccountAvailability::new(routing, "channels.telegram.accounts.main", "123456789")
    }

    #[test]
    fn cli_5_an_empty_approver_list_names_the_key_and_an_example() {
        let hints = account(&[]).setup_hints(Kind::Exec);
        assert_eq!(
            hints[0].to_string(),
            "nobody can approve exec on telegram/main: set \
             `channels.telegram.accounts.main.approvals.approvers`, e.g. `[\"123456789\"]`"
        );
        let all = account(&[]).all_hints();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].why, "nobody can approve on telegram/main");
    }

    #[test]
    fn cli_5_a_kind_left_out_names_the_kinds_key() {
        let mut a = account(&["1"]);
        a.routing.kinds = vec![Kind::Exec];
        assert!(a.setup_hints(Kind::Exec).is_empty());
        let hints = a.setup_hints(Kind::Plugin);
        assert_eq!(hints[0].key, "channels.telegram.accounts.main.approvals.kinds");
        assert_eq!(hints[0].example, "[\"exec\", \"plugin\"]");
    }

    #[test]
    fn cli_5_approvals_turned_off_names_enabled() {
        let mut a = account(&["1"]);
        a.routing.enabled = Enablement::Off;
        assert_eq!(a.setup_hints(Kind::Exec)[0].key, "channels.telegram.accounts.main.approvals.enabled");
    }
}

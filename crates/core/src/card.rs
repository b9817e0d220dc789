//! The card view model (CH-CARD-1): everything a channel needs to render an approval, already
//! redacted, sanitized and worded. Channels only lay it out; they never decide what is shown.

use serde::Serialize;

use crate::{
    clock::{Timestamp, format_duration},
    id::ApprovalId,
    model::{AccountKey, Action, Approval, Decision, Kind, Mode, Reason, Severity, Status},
    policy::{GrantScope, unwrap::shell_script},
    text::{DisplayText, Fitted, Redactor, neutralize_mentions},
    token::{Keyring, TokenAction},
};

/// Where the card is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Waiting, no votes yet.
    Pending,
    /// Waiting, some votes in (quorum > 1).
    Progress,
    /// Approved once (by people, a grant or the unsafe fallback).
    ApprovedOnce,
    /// Approved always.
    ApprovedAlways,
    /// Denied.
    Denied,
    /// Timed out.
    Expired,
    /// No approver could be reached.
    NoRoute,
    /// Cancelled.
    Cancelled,
}

impl Phase {
    /// True while controls are shown.
    pub fn is_open(self) -> bool {
        matches!(self, Phase::Pending | Phase::Progress)
    }

    fn of(a: &Approval) -> Self {
        match (a.status, a.mode, a.reason) {
            (Status::Pending, ..) if a.quorum.votes.is_empty() => Phase::Pending,
            (Status::Pending, ..) => Phase::Progress,
            (Status::Approved, Some(Mode::Always), _) => Phase::ApprovedAlways,
            (Status::Approved, ..) => Phase::ApprovedOnce,
            (Status::Denied, ..) => Phase::Denied,
            (Status::Expired, _, Some(Reason::NoRoute)) => Phase::NoRoute,
            (Status::Expired, ..) => Phase::Expired,
            (Status::Cancelled, ..) => Phase::Cancelled,
        }
    }
}

/// A block of body text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextBlock {
    /// "Command", "Script", "Description", "Summary".
    pub label: &'static str,
    /// Render as code (monospace, fenced).
    pub code: bool,
    /// The text.
    pub text: DisplayText,
}

/// A label/value pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Label.
    pub label: &'static str,
    /// Sanitized value.
    pub value: String,
}

/// How a control looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlStyle {
    /// Allow.
    Success,
    /// Allow always.
    Primary,
    /// Deny.
    Danger,
    /// Full text.
    Secondary,
}

/// A button (or reaction) on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    /// Button text.
    pub label: String,
    /// The decision, or `None` for "Full command".
    pub decision: Option<Decision>,
    /// MAC-verified callback token (CH-CARD-2).
    pub token: String,
    /// Style hint.
    pub style: ControlStyle,
}

/// Quorum progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Allow votes so far.
    pub votes: usize,
    /// Required.
    pub required: u8,
}

/// Inputs that are the same for every card of one account.
#[derive(Debug, Clone, Copy)]
pub struct CardContext<'a> {
    /// The rendering account (tokens are bound to it).
    pub account: &'a AccountKey,
    /// Now, for the relative expiry.
    pub now: Timestamp,
    /// Token keys.
    pub keyring: &'a Keyring,
    /// Redaction.
    pub redactor: &'a Redactor,
    /// `server.public_url` for the console link (PO-11).
    pub public_url: Option<&'a str>,
}

/// An approval as one account shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardView {
    /// The approval.
    pub id: ApprovalId,
    /// The ref.
    pub reference: String,
    /// Kind.
    pub kind: Kind,
    /// Phase.
    pub phase: Phase,
    /// Plugin severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Title line.
    pub title: String,
    /// Body blocks.
    pub blocks: Vec<TextBlock>,
    /// Fields.
    pub fields: Vec<Field>,
    /// "Ref a1b2c3d4 · expires in 28m" while open.
    pub footer: String,
    /// Quorum progress when more than one approval is required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Controls while open (empty when the target gets no buttons).
    pub controls: Vec<Control>,
    /// Final line once terminal: "Approved once by @kim (Telegram)".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Deadline, for platforms with native relative times.
    pub expires_at: Timestamp,
    /// Secrets hidden across all blocks.
    pub hidden_secrets: usize,
    /// Console page with the full text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_text_url: Option<String>,
    /// Token of a "Full command" control, signed with the card's controls so the pure
    /// presentation can offer it ([`CardView::fit`]). Not shown as such.
    #[serde(skip)]
    pub full_text_token: Option<String>,
}

fn clean(raw: &str, redactor: &Redactor) -> String {
    neutralize_mentions(&DisplayText::new(raw, redactor, false).full)
}

fn field(label: &'static str, value: Option<&str>, redactor: &Redactor) -> Option<Field> {
    value.filter(|v| !v.is_empty()).map(|v| Field { label, value: clean(v, redactor) })
}

fn scope_label(scope: Option<&GrantScope>) -> String {
    scope.map_or_else(|| "this exact command".to_owned(), GrantScope::label)
}

impl CardView {
    /// Builds the card of `a` for one account. `buttons` is false for targets without controls.
    pub fn build(a: &Approval, ctx: &CardContext<'_>, buttons: bool) -> Self {
        let r = ctx.redactor;
        let phase = Phase::of(a);
        let mut blocks = vec![main_block(a, r)];
        let (severity, fields) = match &a.action {
            Action::Exec(e) => {
                if let Some(script) = shell_script(&e.argv) {
                    blocks.push(TextBlock {
                        label: "Script",
                        code: true,
                        text: DisplayText::new(script, r, true),
                    });
                }
                let env = (!e.env_keys.is_empty()).then(|| e.env_keys.join(", "));
                let fields = [
                    field("Agent", a.agent_id.as_deref(), r),
                    field("Session", a.session_key.as_deref(), r),
                    field("Host", Some(&e.host), r),
                    field("Directory", e.cwd.as_deref(), r),
                    field("Executable", e.executable.as_deref(), r),
                    field("Env keys", env.as_deref(), r),
                ];
                (None, fields.into_iter().flatten().collect())
            }
            Action::Plugin(p) => {
                let fields = [
                    field("Plugin", Some(&p.plugin_id), r),
                    field("Action", p.tool_name.as_deref(), r),
                    field("Agent", a.agent_id.as_deref(), r),
                ];
                (Some(p.severity), fields.into_iter().flatten().collect())
            }
            Action::Binding(b) => {
                let fields = [
                    field("Plugin", Some(&b.plugin.name), r),
                    field("Platform", Some(b.conversation.channel.label()), r),
                    field("Account", Some(&b.conversation.account), r),
                    field("Conversation", Some(&b.conversation.conversation), r),
                ];
                (None, fields.into_iter().flatten().collect())
            }
        };
        let mut fields: Vec<Field> = fields;
        if let Some(scope) = offered_scope(a, phase) {
            // The button names the scope briefly; this says everything the grant compares (PO-7).
            let mut value = scope.describe();
            if let Action::Exec(e) = &a.action
                && e.grant_env_digest.is_some()
                && scope.base == crate::policy::ScopeBase::ExactArgv
            {
                value.push_str(" (apart from the variables [grants] ignore_env lists)");
            }
            fields.push(Field { label: "Allow always covers", value });
        }
        let title = title(a, r);
        let progress = (a.quorum.required > 1)
            .then_some(Progress { votes: a.quorum.votes.len(), required: a.quorum.required });
        let mut footer = format!("Ref {}", a.short_ref());
        if phase.is_open() {
            footer.push_str(&format!(" · expires in {}", format_duration(ctx.now.until(a.expires_at))));
        }
        if let Some(p) = progress {
            footer.push_str(&format!(" · Approvals {}/{}", p.votes, p.required));
        }
        let controls = if phase.is_open() && buttons { controls(a, ctx) } else { Vec::new() };
        let hidden_secrets = blocks.iter().map(|b| b.text.hidden).sum();
        CardView {
            id: a.id.clone(),
            reference: a.short_ref().to_owned(),
            kind: a.kind(),
            phase,
            severity,
            title,
            blocks,
            fields,
            footer,
            progress,
            controls,
            outcome: outcome_text(a, phase),
            expires_at: a.expires_at,
            hidden_secrets,
            full_text_url: ctx.public_url.map(|u| format!("{}/a/{}", u.trim_end_matches('/'), a.id)),
            full_text_token: (phase.is_open() && buttons)
                .then(|| ctx.keyring.sign(a.kind(), TokenAction::FullText, &a.id, ctx.account)),
        }
    }

    /// Fits the first block to `budget` characters (PO-11). When cut, the card gets a "Full
    /// command" control if the surface can send it privately (`private_full_text`), or keeps its
    /// console link; a surface that can do neither keeps only deny and says why.
    pub fn fit(&self, budget: usize, private_full_text: bool) -> FittedCard {
        let Some(first) = self.blocks.first() else {
            return FittedCard {
                text: Fitted { shown: String::new(), notice: None },
                controls: self.controls.clone(),
                note: None,
            };
        };
        let text = first.text.fit(budget);
        if text.notice.is_none() || self.controls.is_empty() {
            return FittedCard { text, controls: self.controls.clone(), note: None };
        }
        let mut controls = self.controls.clone();
        let note;
        if private_full_text && let Some(token) = self.full_text_token.clone() {
            controls.push(Control {
                label: "Full command".to_owned(),
                decision: None,
                token,
                style: ControlStyle::Secondary,
            });
            note = None;
        } else if let Some(url) = &self.full_text_url {
            note = Some(format!("Full text: {url}"));
        } else {
            controls.retain(|c| c.decision == Some(Decision::Deny));
            note = Some("Only deny is offered: the full text cannot be shown here. Set server.public_url to link to the console.".to_owned());
        }
        FittedCard { text, controls, note }
    }
}

/// A card's first block fitted to a platform budget, with the controls that stay honest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FittedCard {
    /// The shown text and the "Showing n of m characters" notice.
    pub text: Fitted,
    /// Controls to render.
    pub controls: Vec<Control>,
    /// Extra line: console link or why only deny is offered.
    pub note: Option<String>,
}

/// The title line (CH-CARD-1), redacted and sanitized.
pub fn title(a: &Approval, r: &Redactor) -> String {
    match &a.action {
        Action::Exec(_) => "Approval needed: run a command".to_owned(),
        Action::Plugin(p) => format!("Approval needed: {}", clean(&p.title, r)),
        Action::Binding(b) => {
            format!("Approval needed: let {} take this conversation", clean(&b.plugin.name, r))
        }
    }
}

/// The main body block: the command, the plugin's description or the binding's summary.
pub fn main_block(a: &Approval, r: &Redactor) -> TextBlock {
    match &a.action {
        Action::Exec(e) => {
            TextBlock { label: "Command", code: true, text: DisplayText::new(&e.command_text, r, true) }
        }
        Action::Plugin(p) => {
            TextBlock { label: "Description", code: false, text: DisplayText::new(&p.description, r, false) }
        }
        Action::Binding(b) => {
            TextBlock { label: "Summary", code: false, text: DisplayText::new(&b.summary, r, false) }
        }
    }
}

fn controls(a: &Approval, ctx: &CardContext<'_>) -> Vec<Control> {
    let binding = a.kind() == Kind::Binding;
    Decision::ALL
        .into_iter()
        .filter(|d| a.allowed_decisions.contains(d))
        .map(|d| {
            let (label, style) = match (d, binding) {
                (Decision::AllowOnce, false) => ("Allow once".to_owned(), ControlStyle::Success),
                (Decision::AllowOnce, true) => ("Allow here".to_owned(), ControlStyle::Success),
                (Decision::AllowAlways, false) => {
                    (format!("Always allow: {}", scope_label(a.grant_scope.as_ref())), ControlStyle::Primary)
                }
                (Decision::AllowAlways, true) => ("Allow on this account".to_owned(), ControlStyle::Primary),
                (Decision::Deny, _) => ("Deny".to_owned(), ControlStyle::Danger),
            };
            let token = ctx.keyring.sign(a.kind(), TokenAction::Decide(d), &a.id, ctx.account);
            Control { label, decision: Some(d), token, style }
        })
        .collect()
}

/// The scope an open card's allow-always control would create.
fn offered_scope(a: &Approval, phase: Phase) -> Option<&GrantScope> {
    let offered = phase.is_open() && a.allowed_decisions.contains(&Decision::AllowAlways);
    a.grant_scope.as_ref().filter(|_| offered)
}

fn outcome_text(a: &Approval, phase: Phase) -> Option<String> {
    let who = a.decided_by.as_ref().map(|w| w.who()).unwrap_or_else(|| "assent".to_owned());
    let timeout = format_duration(a.timeout());
    Some(match phase {
        Phase::Pending | Phase::Progress => return None,
        Phase::ApprovedOnce => match a.reason {
            Some(Reason::Grant) => "Approved by a standing grant".to_owned(),
            Some(Reason::TimeoutFallback) => {
                format!("Approved automatically: nobody answered in {timeout} (unsafe timeout fallback)")
            }
            _ => format!("Approved once by {who}"),
        },
        Phase::ApprovedAlways => format!("Always allowed by {who} — {}", scope_label(a.grant_scope.as_ref())),
        Phase::Denied => match &a.deny_reason {
            Some(reason) => format!("Denied by {who}: {reason}"),
            None => format!("Denied by {who}"),
        },
        Phase::Expired => format!("Expired: nobody answered in {timeout}"),
        Phase::NoRoute => "Expired: no approver could be reached".to_owned(),
        Phase::Cancelled => format!("Cancelled by {who}"),
    })
}

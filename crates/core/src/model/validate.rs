//! Field validation shared by the request types.

/// A request field that breaks a rule; `field` names it the way the API does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `argv[3]`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Checks a byte length bound on an optional text field.
pub(crate) fn max_bytes(field: &str, value: Option<&str>, max: usize) -> Result<(), ValidationError> {
    match value {
        Some(v) if v.len() > max => {
            Err(ValidationError::new(field, format!("at most {max} bytes, got {}", v.len())))
        }
        _ => Ok(()),
    }
}

/// Checks a character-count range on a required text field.
pub(crate) fn chars_between(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(ValidationError::new(field, format!("{min} to {max} characters, got {n}")))
    }
}

/// Refuses control characters (NUL, newlines, escapes) in a one-line identifier such as a host,
/// an agent id, a session key or an environment name: they forge log lines and card fields.
pub(crate) fn one_line(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    match value.and_then(|v| v.chars().find(|c| c.is_control())) {
        Some(c) => Err(ValidationError::new(
            field,
            format!("must not contain control characters, found U+{:04X}", c as u32),
        )),
        None => Ok(()),
    }
}

/// Refuses a NUL byte, which no path or environment value can hold.
pub(crate) fn no_nul(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(ValidationError::new(field, "contains a NUL byte"));
    }
    Ok(())
}

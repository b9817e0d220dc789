//! PO-9 against a corpus of real-world secret shapes (issue 9, finding 6 and deliverable 4).
//! `tests/data/redaction.tsv` is shared with the server's tests of every display surface.

use assent_core::text::Redactor;

/// The corpus rows: (input, expected display).
pub(crate) fn corpus() -> Vec<(String, String)> {
    let text = include_str!("../data/redaction.tsv");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (input, expected) = l.split_once('\t').unwrap_or_else(|| panic!("no tab in row: {l}"));
            (input.replace("\\n", "\n"), expected.replace("\\n", "\n"))
        })
        .collect()
}

#[test]
fn po_9_finding_6_every_corpus_row_is_redacted_as_expected() {
    let rows = corpus();
    assert!(rows.len() >= 40, "the corpus keeps at least 40 shapes, has {}", rows.len());
    let redactor = Redactor::default();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(input, expected)| {
            let got = redactor.redact(input).text;
            (got != *expected)
                .then(|| format!("  {input:?}\n    got      {got:?}\n    expected {expected:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

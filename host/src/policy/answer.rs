//! What the host reads of an answer, bounded: one answer's nesting and values
//! ([`check_answer`]), a command's answers together ([`AnswerBudget`]), and the envelope
//! unwrapped ([`unwrap_envelope`]).

use serde_json::Value;

use crate::error::AnswerError;
use crate::error::{Error, Result};

/// Deepest nesting of arrays and objects the host parses in an answer.
pub const ANSWER_DEPTH: u64 = 64;
/// Most JSON values (array elements, object members, containers) the host parses in one
/// answer. A parsed value costs the host tens of bytes however small it is in the answer,
/// so an answer of 16 MiB of `[0,0,0,...]` would cost hundreds of MB to parse and render;
/// it is refused after one pass over its bytes instead. The embedded policy's largest
/// answers (a Workflow of many templates) have a few thousand.
pub const ANSWER_VALUES: u64 = 100_000;

/// Default of a command's answer budget ([`AnswerBudget`], `--answer-budget-mib`): 256 MiB.
pub const ANSWER_BUDGET: u64 = 256 << 20;

/// What one command may read from the module in all: the sum of its answers' bytes. One
/// answer is bounded ([`Limits::max_answer`](crate::Limits), [`check_answer`]); a command
/// over many documents (`plan` of a file of 10,000 documents, `policy diff`) holds or
/// produces one per document, so their sum is bounded too. Each answer is charged when it is
/// read, whether it is then accepted or refused (a refused one still cost its pass); the
/// command stops at the first answer over the budget, with [`AnswerError::AnswerBudget`].
/// What a command keeps of its answers (parsed plans, `policy diff`'s changes, which are
/// parts of the two answers) is at most what it was charged, plus the parsed values'
/// overhead that [`ANSWER_VALUES`] bounds per answer.
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    limit: u64,
    used: u64,
}

impl AnswerBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        AnswerBudget { limit, used: 0 }
    }

    /// Charges one answer of `bytes`; `left` is how many documents the command has after
    /// this one, for the error.
    ///
    /// # Errors
    /// [`AnswerError::AnswerBudget`] when the sum goes over the budget.
    pub fn charge(&mut self, bytes: usize, left: usize) -> Result<()> {
        self.used = self
            .used
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if self.used > self.limit {
            return Err(Error::Answer(AnswerError::AnswerBudget {
                used: self.used,
                limit: self.limit,
                left,
            }));
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// Counts an answer's nesting depth and values in one pass, without allocating, and
/// refuses one over [`ANSWER_DEPTH`] or [`ANSWER_VALUES`].
///
/// # Errors
/// [`AnswerError::AnswerTooComplex`].
pub fn check_answer(call: &'static str, bytes: &[u8]) -> Result<()> {
    let (mut depth, mut values, mut in_string, mut escaped) = (0u64, 0u64, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > ANSWER_DEPTH {
                    return Err(Error::Answer(AnswerError::AnswerTooComplex {
                        call,
                        what: format!("nesting deeper than {ANSWER_DEPTH}"),
                        max: ANSWER_DEPTH,
                    }));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
    }
    if values > ANSWER_VALUES {
        return Err(Error::Answer(AnswerError::AnswerTooComplex {
            call,
            what: format!("{values} values"),
            max: ANSWER_VALUES,
        }));
    }
    Ok(())
}

/// The value under `ok`, or the error envelope as [`AnswerError::Policy`]. The answer is first
/// checked with [`check_answer`], so what it costs the host to parse is bounded.
///
/// # Errors
/// [`AnswerError::AnswerTooComplex`], [`AnswerError::BadAnswer`] or [`AnswerError::Policy`].
pub fn unwrap_envelope(call: &'static str, bytes: &[u8]) -> Result<Value> {
    check_answer(call, bytes)?;
    let bad = |reason: String| Error::Answer(AnswerError::BadAnswer { call, reason });
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
    let Value::Object(mut envelope) = value else {
        return Err(bad("not a JSON object".into()));
    };
    if let Some(ok) = envelope.remove("ok") {
        return Ok(ok);
    }
    match envelope.remove("error") {
        Some(Value::Object(error)) => {
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(String::from);
            Err(Error::Answer(AnswerError::Policy {
                code: text("code").ok_or_else(|| bad("error envelope without a `code`".into()))?,
                message: text("message").unwrap_or_default(),
                path: text("path"),
            }))
        }
        _ => Err(bad("neither `ok` nor `error`".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_unwrap_or_name_the_problem() {
        assert_eq!(
            unwrap_envelope("sidekill_plan", br#"{"ok":{"a":1}}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        let err = unwrap_envelope(
            "sidekill_plan",
            br#"{"error":{"code":"missing_field","message":"missing field `object`","path":"object"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Answer(AnswerError::Policy { code, path: Some(p), .. }) if code == "missing_field" && p == "object")
        );
        for bad in [&b"nope"[..], b"[1]", b"{}", br#"{"error":{}}"#] {
            assert_eq!(
                unwrap_envelope("sidekill_plan", bad).unwrap_err().name(),
                "bad_answer"
            );
        }
    }
}

//! Escaping of text that comes from a policy module (its name and version, error
//! messages, export names) or from a manifest before it reaches a terminal or a log line.
//!
//! A module's strings are data from outside: an ESC byte in a policy's error message could
//! clear the screen and print "all good". Every C0 control character (newlines and tabs
//! included: the fields are one line each), DEL, every C1 control character and the
//! bidirectional overrides (which reorder what a reader sees) are shown as `\u{..}`, as
//! Rust's `escape_debug` shows them; everything else is unchanged.

use std::borrow::Cow;

use serde_json::Value;

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control and bidi-override character escaped; borrowed when none.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON value with every string (keys included) escaped as [`text`] escapes it.
pub fn value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(text(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(self::value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (text(k).into_owned(), self::value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_shown_not_obeyed() {
        assert_eq!(text("plain ünïcode"), "plain ünïcode");
        assert_eq!(text("\u{1b}[2Jall good"), "\\u{1b}[2Jall good");
        assert_eq!(text("a\nb\r\u{7f}\u{9b}"), "a\\u{a}b\\u{d}\\u{7f}\\u{9b}");
        assert_eq!(text("x\u{202e}y"), "x\\u{202e}y");
        let v = value(&serde_json::json!({"k\u{1b}": ["\u{1b}[2J", 1]}));
        assert_eq!(v, serde_json::json!({"k\\u{1b}": ["\\u{1b}[2J", 1]}));
    }
}

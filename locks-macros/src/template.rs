//! The key template: literal text with `{arg}` / `{arg.field.sub}` placeholders and `{{`, `}}`
//! escapes.

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text (escapes already resolved).
    Text(String),
    /// A placeholder: the argument's name, then field names or tuple indices.
    Hole {
        /// The argument (`order` in `{order.id}`), possibly `self`.
        root: String,
        /// The fields after it (`["id"]` in `{order.id}`).
        fields: Vec<String>,
        /// The placeholder as written, braces included, for messages.
        text: String,
    },
}

/// A field or tuple index: `id`, `r#type`, `0`.
fn is_field(s: &str) -> bool {
    !s.is_empty() && (s.bytes().all(|b| b.is_ascii_digit()) || is_ident(s))
}

/// A Rust identifier (ASCII, or a raw identifier `r#name`).
fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    s != "_" && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Check one placeholder's content (between the braces).
fn hole(content: &str) -> Result<Piece, String> {
    let text = format!("{{{content}}}");
    if content.is_empty() {
        return Err(
            "empty placeholder `{}` in the key: name an argument, e.g. `{order_id}`".to_owned(),
        );
    }
    if content.contains(':') {
        return Err(format!(
            "placeholder `{text}` in the key has a format spec: placeholders are formatted with \
             `Display` and take no spec"
        ));
    }
    let mut parts = content.split('.');
    let root = parts.next().unwrap_or_default();
    if !is_ident(root) {
        return Err(format!(
            "invalid placeholder `{text}` in the key: expected `{{argument}}` or \
             `{{argument.field}}`"
        ));
    }
    let fields: Vec<String> = parts.map(str::to_owned).collect();
    if let Some(bad) = fields.iter().find(|f| !is_field(f)) {
        return Err(format!(
            "invalid placeholder `{text}` in the key: `{bad}` is not a field name or tuple index"
        ));
    }
    Ok(Piece::Hole {
        root: root.to_owned(),
        fields,
        text,
    })
}

/// Split `template` into text and placeholders. The error is a message for the key literal.
pub(crate) fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut content = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    if c == '{' {
                        return Err(format!(
                            "invalid placeholder `{{{content}{{` in the key: write `{{{{` for \
                             a literal `{{`"
                        ));
                    }
                    content.push(c);
                }
                if !closed {
                    return Err(format!(
                        "unclosed placeholder `{{{content}` in the key: close it with `}}`, or \
                         write `{{{{` for a literal `{{`"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(hole(&content)?);
            }
            '}' => {
                return Err("unmatched `}` in the key: write `}}` for a literal `}`".to_owned());
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(root: &str, fields: &[&str], text: &str) -> Piece {
        Piece::Hole {
            root: root.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            text: text.into(),
        }
    }

    #[test]
    fn text_placeholders_and_escapes() {
        assert_eq!(
            parse("payment:{order_id}").unwrap(),
            vec![
                Piece::Text("payment:".into()),
                hole("order_id", &[], "{order_id}")
            ]
        );
        assert_eq!(
            parse("{{x}}:{a.b.0}{self.id}").unwrap(),
            vec![
                Piece::Text("{x}:".into()),
                hole("a", &["b", "0"], "{a.b.0}"),
                hole("self", &["id"], "{self.id}"),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("plain").unwrap(), vec![Piece::Text("plain".into())]);
    }

    #[test]
    fn malformed_templates_are_errors() {
        for (bad, needle) in [
            ("a{}", "empty placeholder"),
            ("a{x", "unclosed placeholder `{x`"),
            ("a}b", "unmatched `}`"),
            ("{x:?}", "format spec"),
            ("{x.}", "`` is not a field"),
            ("{1x}", "invalid placeholder `{1x}`"),
            ("{a b}", "invalid placeholder `{a b}`"),
            ("{_}", "invalid placeholder `{_}`"),
            ("{a{b}", "invalid placeholder `{a{`"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}

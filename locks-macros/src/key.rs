//! The key: the template's placeholders checked against the arguments, rendered as a
//! `format!` call.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::{Ident, ItemFn, Pat};

use crate::args::Args;
use crate::signature::{LeaseParam, argument_names};
use crate::template::{self, Piece};

/// A field name or tuple index of a placeholder, spanned on the key literal.
fn field_tokens(field: &str, span: Span) -> syn::Result<TokenStream> {
    if field.bytes().all(|b| b.is_ascii_digit()) {
        let index: u32 = field.parse().map_err(|_| {
            syn::Error::new(
                span,
                format!("tuple index `{field}` in the key is too large"),
            )
        })?;
        return Ok(syn::Index { index, span }.into_token_stream());
    }
    let mut ident: Ident = syn::parse_str(field).map_err(|_| {
        syn::Error::new(
            span,
            format!("`{field}` in the key is not a valid field name"),
        )
    })?;
    ident.set_span(span);
    Ok(ident.into_token_stream())
}

/// `format!` arguments for the key: the format string and one expression per placeholder.
pub(crate) fn key_format(
    args: &Args,
    item: &ItemFn,
    lease: Option<&LeaseParam>,
) -> syn::Result<(syn::LitStr, Vec<TokenStream>)> {
    let span = args.key.span();
    let pieces = template::parse(&args.key.value()).map_err(|m| syn::Error::new(span, m))?;
    let names = argument_names(item);
    let lease_name = lease.and_then(|l| match &l.pat {
        Pat::Ident(p) => Some(p.ident.to_string()),
        _ => None,
    });
    let mut fmt = String::new();
    let mut exprs = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => fmt.push_str(&t.replace('{', "{{").replace('}', "}}")),
            Piece::Hole { root, fields, text } => {
                if lease_name.as_deref() == Some(root.as_str()) {
                    return Err(syn::Error::new(
                        span,
                        format!(
                            "placeholder `{text}` in the key names the lease parameter `{root}`, \
                             which only exists once the lock is held"
                        ),
                    ));
                }
                let Some(arg) = names.iter().find(|n| **n == root) else {
                    let known = if names.is_empty() {
                        format!("`{}` has no arguments", item.sig.ident)
                    } else {
                        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                        format!("the arguments are {}", list.join(", "))
                    };
                    return Err(syn::Error::new(
                        span,
                        format!(
                            "unknown placeholder `{text}` in the key: `{root}` is not an argument \
                             of `{}`; {known}",
                            item.sig.ident
                        ),
                    ));
                };
                let mut root_ident = arg.clone();
                root_ident.set_span(span);
                let mut expr = root_ident.into_token_stream();
                for field in &fields {
                    let f = field_tokens(field, span)?;
                    expr.extend(quote_spanned!(span=> . #f));
                }
                fmt.push_str("{}");
                exprs.push(expr);
            }
        }
    }
    Ok((syn::LitStr::new(&fmt, span), exprs))
}

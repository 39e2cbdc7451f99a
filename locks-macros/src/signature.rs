//! Reading the annotated function's signature: its result type, the lease parameter, the
//! argument names placeholders may use.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, PathSegment, Token, Type,
};

/// The function's `LeaseHandle` parameter, removed from the signature and bound in the body.
pub(crate) struct LeaseParam {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) pat: Pat,
    /// `LeaseHandle` as the user wrote it (the referent, for `&LeaseHandle`).
    pub(crate) ty: Type,
    pub(crate) by_ref: bool,
}

/// `ty` without invisible groups and parentheses.
fn bare(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => bare(&g.elem),
        Type::Paren(p) => bare(&p.elem),
        other => other,
    }
}

fn bare_mut(ty: &mut Type) -> &mut Type {
    match ty {
        Type::Group(g) => bare_mut(&mut g.elem),
        Type::Paren(p) => bare_mut(&mut p.elem),
        other => other,
    }
}

/// The last segment of a plain path type (`Result` in `std::io::Result<T>`).
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match bare(ty) {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

pub(crate) fn is_lease_handle(ty: &Type) -> bool {
    last_segment(ty)
        .is_some_and(|s| s.ident == "LeaseHandle" && matches!(s.arguments, PathArguments::None))
}

/// The type arguments of a result type: `Result<..>`, or an alias whose name ends in `Result`
/// (`io::Result<T>`, `AppResult<T>`, `PayResult`); `None` for anything else. An alias is
/// taken on trust here: the type checker rejects one that is not a `Result`.
pub(crate) fn result_type_args(ty: &Type) -> Option<Vec<&Type>> {
    let seg = last_segment(ty)?;
    if !seg.ident.to_string().ends_with("Result") {
        return None;
    }
    Some(match &seg.arguments {
        PathArguments::None => Vec::new(),
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        PathArguments::Parenthesized(_) => return None,
    })
}

/// For skip mode: `Result<Option<T>, E>` → `Result<T, E>` (the body's type).
pub(crate) fn unwrap_option_ok(ret: &Type) -> Option<Type> {
    let mut body = ret.clone();
    let Type::Path(p) = bare_mut(&mut body) else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &mut p.path.segments.last_mut()?.arguments else {
        return None;
    };
    let ok = args.args.iter_mut().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })?;
    let inner = {
        let seg = last_segment(ok)?;
        if seg.ident != "Option" {
            return None;
        }
        let PathArguments::AngleBracketed(opt) = &seg.arguments else {
            return None;
        };
        let mut types = opt.args.iter().filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        });
        let inner = types.next()?;
        if types.next().is_some() || opt.args.len() != 1 {
            return None;
        }
        inner
    };
    *ok = inner;
    Some(body)
}

/// A type as a reader would write it, for messages.
pub(crate) fn show(tokens: &impl ToTokens) -> String {
    let mut s = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" , ", ", "),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// Whether `ty` mentions `impl Trait` (which a `let` type annotation cannot name).
pub(crate) fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(i) => i == "impl",
        proc_macro2::TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}

/// Take the `LeaseHandle` parameter out of the signature.
pub(crate) fn take_lease(item: &mut ItemFn) -> syn::Result<Option<LeaseParam>> {
    let mut lease: Option<LeaseParam> = None;
    let mut kept: Punctuated<FnArg, Token![,]> = Punctuated::new();
    for arg in std::mem::take(&mut item.sig.inputs) {
        let FnArg::Typed(typed) = &arg else {
            kept.push(arg);
            continue;
        };
        let found = match bare(&typed.ty) {
            Type::Reference(r) if is_lease_handle(&r.elem) => {
                if r.mutability.is_some() {
                    return Err(syn::Error::new(
                        typed.ty.span(),
                        "take the lease as `LeaseHandle` or `&LeaseHandle`, not `&mut`",
                    ));
                }
                Some(((*r.elem).clone(), true))
            }
            t if is_lease_handle(t) => Some((t.clone(), false)),
            _ => None,
        };
        let Some((ty, by_ref)) = found else {
            kept.push(arg);
            continue;
        };
        if lease.is_some() {
            return Err(syn::Error::new(
                typed.span(),
                "#[with_lock]: only one `LeaseHandle` parameter is allowed (it receives the \
                 held lease)",
            ));
        }
        lease = Some(LeaseParam {
            attrs: typed.attrs.clone(),
            pat: (*typed.pat).clone(),
            ty,
            by_ref,
        });
    }
    item.sig.inputs = kept;
    Ok(lease)
}

/// The names a placeholder may start with: `self` and the identifier arguments.
pub(crate) fn argument_names(item: &ItemFn) -> Vec<Ident> {
    item.sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Receiver(r) => Some(Ident::new("self", r.self_token.span)),
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) if p.subpat.is_none() => Some(p.ident.clone()),
                _ => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ty(s: &str) -> Type {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn result_shapes() {
        assert_eq!(
            result_type_args(&ty("Result<u8, E>")).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            result_type_args(&ty("io::Result<u8>")).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(
            result_type_args(&ty("AppResult<u8>")).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(result_type_args(&ty("PayResult")).map(|v| v.len()), Some(0));
        assert!(result_type_args(&ty("u8")).is_none());
        assert!(result_type_args(&ty("Option<u8>")).is_none());
        assert!(result_type_args(&ty("(Result<u8, E>,)")).is_none());
    }

    #[test]
    fn skip_mode_body_type() {
        let body = |s: &str| unwrap_option_ok(&ty(s)).map(|t| show(&t));
        assert_eq!(
            body("Result<Option<Receipt>, AppError>").as_deref(),
            Some("Result<Receipt, AppError>")
        );
        assert_eq!(
            body("anyhow::Result<Option<u8>>").as_deref(),
            Some("anyhow::Result<u8>")
        );
        assert_eq!(body("Result<u8, E>"), None);
        assert_eq!(body("Result<Option, E>"), None);
    }

    #[test]
    fn impl_trait_is_detected() {
        assert!(mentions_impl(quote!(Result<Box<impl Fn()>, E>)));
        assert!(!mentions_impl(quote!(Result<u8, E>)));
    }
}

//! Generating the locked body of the annotated function.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType, Type};

use crate::args::{Args, OnContended};
use crate::key::key_format;
use crate::signature::{
    LeaseParam, mentions_impl, result_type_args, show, take_lease, unwrap_option_ok,
};

/// Hygienic names for the generated locals: user code cannot see or shadow them.
struct Names {
    service: Ident,
    key: Ident,
    opts: Ident,
    lease: Ident,
    value: Ident,
    error: Ident,
    ret: Ident,
}

impl Names {
    fn new() -> Self {
        let id = |name: &str| Ident::new(name, Span::mixed_site());
        Names {
            service: id("__locks_service"),
            key: id("__locks_key"),
            opts: id("__locks_opts"),
            lease: id("__locks_lease"),
            value: id("__locks_value"),
            error: id("__locks_error"),
            ret: id("__locks_ret"),
        }
    }
}

/// `#[with_lock(args)] item` → the item with a locked body; the generated code names the core
/// `default_crate` unless the arguments say `crate = ...`.
pub(crate) fn with_lock(
    attr: TokenStream,
    item: TokenStream,
    default_crate: syn::Path,
) -> syn::Result<TokenStream> {
    let args = Args::parse(attr, default_crate)?;
    let mut item: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[with_lock] goes on an `async fn` or method with a body: {e}"),
        )
    })?;
    if item.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            item.sig.fn_token.span,
            "#[with_lock] goes on an `async fn`: the lock is taken and released with `.await`",
        ));
    }
    let fn_name = item.sig.ident.to_string();
    let ret: Type = match &item.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                item.sig.ident.span(),
                format!(
                    "#[with_lock] needs a function that returns `Result<T, E>` with \
                     `E: From<locks_core::LockError>` (acquire errors are returned as \
                     `Err(E::from(error))`), but `{fn_name}` returns `()`"
                ),
            ));
        }
    };
    let Some(types) = result_type_args(&ret) else {
        return Err(syn::Error::new(
            ret.span(),
            format!(
                "#[with_lock] needs a function that returns `Result<T, E>` (or an alias named \
                 `...Result`) with `E: From<locks_core::LockError>` (acquire errors are \
                 returned as `Err(E::from(error))`), but `{fn_name}` returns `{}`",
                show(&ret)
            ),
        ));
    };
    // The `From<LockError>` conversion is reported at the error type, when it is written.
    let err_span = types.get(1).map_or_else(|| ret.span(), |e| e.span());
    let body_ty = match args.on_contended {
        OnContended::Wait => ret.clone(),
        OnContended::Skip => unwrap_option_ok(&ret).ok_or_else(|| {
            syn::Error::new(
                ret.span(),
                format!(
                    "`on_contended = \"skip\"` needs the return type `Result<Option<T>, E>`: \
                     the function returns `Ok(None)` when the lock is held, and the body \
                     returns `Result<T, E>` (wrapped in `Some` by the macro); `{fn_name}` \
                     returns `{}`",
                    show(&ret)
                ),
            )
        })?,
    };

    let lease = take_lease(&mut item)?;
    let (fmt, key_exprs) = key_format(&args, &item, lease.as_ref())?;

    let n = Names::new();
    let krate = &args.krate;
    let locks = &args.locks;
    let service_expr = quote_spanned! {locks.span()=>
        ::core::borrow::Borrow::<#krate::LockService>::borrow(&(#locks))
    };
    let duration = |d: std::time::Duration| {
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        quote!(::core::time::Duration::new(#secs, #nanos))
    };
    let ttl = args.ttl.as_ref().map(|d| {
        let d = duration(d.value);
        quote!(.ttl(#d))
    });
    let wait = args.wait.as_ref().map(|d| {
        let d = duration(d.value);
        quote!(.wait_timeout(#d))
    });
    let Names {
        service,
        key,
        opts,
        lease: lease_var,
        value,
        error,
        ret: ret_var,
    } = &n;
    let prelude = quote! {
        let #service: #krate::LockService = ::core::clone::Clone::clone(#service_expr);
        let #key: ::std::string::String = ::std::format!(#fmt #(, #key_exprs)*);
        let #opts = #krate::AcquireOptions::new() #ttl #wait;
    };
    let bind_lease = lease.as_ref().map(|l| {
        let LeaseParam {
            attrs,
            pat,
            ty,
            by_ref,
        } = l;
        if *by_ref {
            quote!(#(#attrs)* let #pat: &#ty = &#lease_var;)
        } else {
            quote!(#(#attrs)* let #pat: #ty = #lease_var;)
        }
    });
    // Gives the body's async block its type, so that `?` and `return` in it need no
    // annotation (as `tracing::instrument` does).
    let fake_return = (!mentions_impl(body_ty.to_token_stream())).then(|| {
        quote! {
            #[allow(
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let #ret_var: #body_ty = loop {};
                return #ret_var;
            }
        }
    });
    let block = &item.block;
    let work_block = quote! {
        async move {
            #bind_lease
            #fake_return
            #block
        }
    };
    let into_err = quote_spanned! {err_span=> ::core::convert::From::from(#error) };

    let lease_arg = if lease.is_some() {
        quote!(#lease_var)
    } else {
        quote!(_)
    };
    let work = quote!(move |#lease_arg: #krate::LeaseHandle| #work_block);
    // Both modes hand the body to the service, which releases the lock after it on `Ok`,
    // `Err`, panic (then resumed) and cancellation.
    let body = match args.on_contended {
        OnContended::Wait => quote! {{
            #prelude
            match #service.with_lock_opts(&#key, #opts, #work).await {
                ::core::result::Result::Ok(#value) => #value,
                ::core::result::Result::Err(#error) => ::core::result::Result::Err(#into_err),
            }
        }},
        // One attempt; `Ok(None)` without running the body when the lock is held elsewhere.
        OnContended::Skip => quote! {{
            #prelude
            match #service.try_with_lock_opts(&#key, #opts, #work).await {
                ::core::result::Result::Ok(::core::option::Option::Some(#value)) => {
                    ::core::result::Result::map(#value, ::core::option::Option::Some)
                }
                ::core::result::Result::Ok(::core::option::Option::None) => {
                    ::core::result::Result::Ok(::core::option::Option::None)
                }
                ::core::result::Result::Err(#error) => ::core::result::Result::Err(#into_err),
            }
        }},
    };
    item.block = Box::new(syn::parse2(body)?);
    Ok(item.into_token_stream())
}

/// What to emit next to an expansion error: the function with the signature callers will see
/// (no lease parameter) and a body that adds no errors of its own, so that the attribute's
/// error is the one reported.
pub(crate) fn stand_in(item: TokenStream) -> TokenStream {
    let Ok(mut item) = syn::parse2::<ItemFn>(item.clone()) else {
        return item;
    };
    // Keep the lease parameter if taking it out is the error.
    let mut without_lease = item.clone();
    if take_lease(&mut without_lease).is_ok() {
        item = without_lease;
    }
    item.attrs
        .push(syn::parse_quote!(#[allow(unused_variables, unreachable_code)]));
    item.block = Box::new(syn::parse_quote!({
        ::core::unimplemented!("#[with_lock] did not expand")
    }));
    item.into_token_stream()
}

//! The attribute's arguments: `locks = <expr>, key = "...", ttl = "...", wait = "...",
//! on_contended = "wait" | "skip", crate = <path>`.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, LitStr, Path, Token};

/// The argument names, for the "unknown argument" error.
const KNOWN: &str = "`locks`, `key`, `ttl`, `wait`, `on_contended`, `crate`";

/// What to do when the lock is held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnContended {
    /// Wait (up to `wait`, or the service's default wait timeout), then fail with
    /// `LockError::AcquireTimeout` converted into the function's error type.
    Wait,
    /// One attempt; the body does not run and the function returns `Ok(None)`.
    Skip,
}

/// A duration parsed at compile time.
pub(crate) struct DurationArg {
    pub(crate) value: Duration,
}

/// The parsed `#[with_lock(...)]` arguments.
pub(crate) struct Args {
    pub(crate) locks: Expr,
    pub(crate) key: LitStr,
    pub(crate) ttl: Option<DurationArg>,
    pub(crate) wait: Option<DurationArg>,
    pub(crate) on_contended: OnContended,
    /// The path generated code uses for `locks-core` (default `::locks_core`).
    pub(crate) krate: Path,
}

/// Arguments as written, before the required ones are checked.
#[derive(Default)]
struct Raw {
    locks: Option<Expr>,
    key: Option<LitStr>,
    ttl: Option<DurationArg>,
    wait: Option<(DurationArg, LitStr)>,
    on_contended: Option<(OnContended, LitStr)>,
    krate: Option<Path>,
}

fn duplicate(span: Span, name: &str) -> syn::Error {
    syn::Error::new(span, format!("duplicate `{name}` argument"))
}

/// `Some(value)` into `slot`, or a "duplicate" error at `span`.
fn set<T>(slot: &mut Option<T>, value: T, span: Span, name: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate(span, name));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_duration(lit: &LitStr, name: &str) -> syn::Result<DurationArg> {
    let text = lit.value();
    let value = humantime::parse_duration(text.trim()).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "invalid duration {text:?} for `{name}`: {e}; \
                 expected a humantime duration such as \"10s\", \"500ms\" or \"1m 30s\""
            ),
        )
    })?;
    if name == "ttl" && value.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            "invalid duration for `ttl`: a lease ttl must be greater than zero",
        ));
    }
    Ok(DurationArg { value })
}

fn parse_on_contended(lit: &LitStr) -> syn::Result<OnContended> {
    match lit.value().as_str() {
        "wait" => Ok(OnContended::Wait),
        "skip" => Ok(OnContended::Skip),
        other => Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid `on_contended` value {other:?}: expected \"wait\" (the default: wait \
                 up to `wait`, then return the acquire timeout as an error) or \"skip\" (one \
                 attempt; return `Ok(None)` without running the body when the lock is held)"
            ),
        )),
    }
}

impl Parse for Raw {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut raw = Raw::default();
        while !input.is_empty() {
            let (name, span) = if input.peek(Token![crate]) {
                let token: Token![crate] = input.parse()?;
                ("crate".to_owned(), token.span)
            } else {
                let ident: Ident = input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        format!("expected an argument name: one of {KNOWN}"),
                    )
                })?;
                (ident.to_string(), ident.span())
            };
            input.parse::<Token![=]>()?;
            match name.as_str() {
                "locks" => {
                    let expr: Expr = input.parse()?;
                    set(&mut raw.locks, expr, span, "locks")?;
                }
                "key" => {
                    let lit: LitStr = input.parse()?;
                    set(&mut raw.key, lit, span, "key")?;
                }
                "ttl" => {
                    let lit: LitStr = input.parse()?;
                    let d = parse_duration(&lit, "ttl")?;
                    set(&mut raw.ttl, d, span, "ttl")?;
                }
                "wait" => {
                    let lit: LitStr = input.parse()?;
                    let d = parse_duration(&lit, "wait")?;
                    set(&mut raw.wait, (d, lit), span, "wait")?;
                }
                "on_contended" => {
                    let lit: LitStr = input.parse()?;
                    let mode = parse_on_contended(&lit)?;
                    set(&mut raw.on_contended, (mode, lit), span, "on_contended")?;
                }
                "crate" => {
                    let path = input.call(Path::parse_mod_style)?;
                    set(&mut raw.krate, path, span, "crate")?;
                }
                other => {
                    return Err(syn::Error::new(
                        span,
                        format!("unknown argument `{other}`: expected one of {KNOWN}"),
                    ));
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(raw)
    }
}

impl Args {
    /// Parse the attribute's arguments and check the required ones and their combinations;
    /// `default_crate` is the core's path when no `crate = ...` is given.
    pub(crate) fn parse(
        tokens: proc_macro2::TokenStream,
        default_crate: Path,
    ) -> syn::Result<Args> {
        let raw: Raw = syn::parse2(tokens)?;
        let Some(locks) = raw.locks else {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing `locks = <expr>`: #[with_lock] needs the `LockService` (or \
                 `&LockService`) to lock with, e.g. `locks = self.locks`; there is no global \
                 default",
            ));
        };
        let Some(key) = raw.key else {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing `key = \"...\"`: the lock's key, e.g. `key = \"payment:{order_id}\"`",
            ));
        };
        let on_contended = raw
            .on_contended
            .as_ref()
            .map_or(OnContended::Wait, |(mode, _)| *mode);
        if on_contended == OnContended::Skip
            && let Some((_, lit)) = &raw.wait
        {
            return Err(syn::Error::new(
                lit.span(),
                "`wait` has no effect with `on_contended = \"skip\"`, which makes a single \
                 attempt; remove it",
            ));
        }
        Ok(Args {
            locks,
            key,
            ttl: raw.ttl,
            wait: raw.wait.map(|(d, _)| d),
            on_contended,
            krate: raw.krate.unwrap_or(default_crate),
        })
    }
}

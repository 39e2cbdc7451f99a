//! # locks-macros
//!
//! The [`#[with_lock]`](macro@with_lock) attribute: run an `async fn` or method under a
//! distributed lock of a [`locks_core::LockService`](https://docs.rs/locks-core), taken
//! before the body runs and released after it on success, error, panic and cancellation.
//!
//! ```
//! use locks_core::{LeaseHandle, LockError, LockService};
//! use locks_macros::with_lock;
//!
//! #[derive(Debug)]
//! enum AppError {
//!     Lock(LockError),
//! }
//!
//! impl From<LockError> for AppError {
//!     fn from(e: LockError) -> Self {
//!         AppError::Lock(e)
//!     }
//! }
//!
//! struct Payments {
//!     locks: LockService,
//! }
//!
//! impl Payments {
//!     /// Charge an order; one instance at a time per order id.
//!     #[with_lock(locks = self.locks, key = "payment:{order_id}", ttl = "10s", wait = "5s")]
//!     async fn charge(
//!         &self,
//!         order_id: u64,
//!         amount: u64,
//!         lease: LeaseHandle,
//!     ) -> Result<(u64, u64), AppError> {
//!         // Runs while `payment:{order_id}` is held: pass the fence to the payment provider.
//!         Ok((amount, lease.fence()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), AppError> {
//! let payments = Payments { locks: LockService::new(locks_memory::MemoryBackend::new())? };
//! assert_eq!(payments.charge(42, 500).await?, (500, 1)); // callers do not pass the lease
//! # Ok(()) }
//! ```
//!
//! The generated code names the core as `::locks_core`: the crate using the attribute needs
//! `locks-core` as a dependency (or `crate = path::to::locks_core` when it is re-exported or
//! renamed). Through the `locks` facade crate, write `#[locks::with_lock(...)]`: that is
//! [`macro@with_lock_via_facade`], whose generated code names `::locks` instead.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod expand;
mod key;
mod signature;
mod template;

use proc_macro::TokenStream;

/// Run an `async fn` or method while holding a distributed lock.
///
/// ```text
/// #[with_lock(
///     locks = <expr>,                  // required: a `LockService` or `&LockService`
///     key = "<template>",              // required: "payment:{order_id}", "{order.id}", ...
///     ttl = "<duration>",              // optional: lease ttl; the service default when absent
///     wait = "<duration>",             // optional: wait budget; the service default when absent
///     on_contended = "wait" | "skip",  // optional: "wait" when absent
///     crate = <path>,                  // optional: where locks-core is; `::locks_core` by default
/// )]
/// ```
///
/// Arguments come in any order, each at most once.
///
/// - **`locks`**: any expression of type `LockService`, `&LockService` (or another
///   `Borrow<LockService>`, such as `Arc<LockService>`), evaluated once per call before the
///   lock is taken, e.g. `self.locks`, `&self.locks`, `ctx.locks()`. It is required: there is
///   no global service the function could silently run without.
/// - **`key`**: a string with `{arg}` and `{arg.field.sub}` placeholders (tuple indices too:
///   `{pair.0}`; and `{self.field}` in methods) naming the function's arguments, formatted with
///   `Display`; `{{` and `}}` are literal braces. Placeholders are checked at compile time: a
///   name that is not an argument is an error on the key. The service adds its prefix and
///   validates the resulting key (an invalid key is a `LockError::InvalidKey`).
/// - **`ttl`**, **`wait`**: [humantime](https://docs.rs/humantime) durations (`"10s"`,
///   `"500ms"`, `"1m 30s"`) parsed at compile time; a malformed one is a compile error. They
///   become [`AcquireOptions::ttl`] and [`AcquireOptions::wait_timeout`]; the service's bounds
///   (such as `max_ttl`) are checked when the lock is taken.
/// - **`on_contended`**: `"wait"` (the default) waits up to `wait` for the lock and returns
///   `LockError::AcquireTimeout` (converted) when it stays held; `"skip"`: see below.
/// - **`crate`**: the path of `locks-core` for the generated code, when it is not the
///   dependency `locks_core` (renamed, or re-exported by another crate).
///
/// [`AcquireOptions::ttl`]: https://docs.rs/locks-core/latest/locks_core/struct.AcquireOptions.html#method.ttl
/// [`AcquireOptions::wait_timeout`]: https://docs.rs/locks-core/latest/locks_core/struct.AcquireOptions.html#method.wait_timeout
///
/// # The function
///
/// - It must be `async` and return `Result<T, E>` with `E: From<locks_core::LockError>`;
///   written as `Result<..>` or as an alias whose name ends in `Result` (`io::Result<T>`,
///   `AppResult<T>`), which the type checker then holds to being a `Result`. An error taking
///   the lock (timeout, invalid key, store failure, shutdown) is returned as
///   `Err(E::from(error))` and the body does not run.
/// - The body runs with the lock held, as the `work` of [`LockService::with_lock_opts`], and
///   the lock is released after it: on `Ok`, on `Err`, on panic (released, then the panic
///   resumes) and on cancellation (dropping the future releases in the background). `return`
///   and `?` in the body work as in any function.
/// - **The lease**: a parameter of type `LeaseHandle` or `&LeaseHandle` (any name, any
///   position) is removed from the generated signature, so callers do not pass it, and is
///   bound in the body to the held lease: use `lease.fence()`, `lease.lost()`,
///   `lease.ensure_held()`. It cannot appear in the key.
/// - Free functions, methods (`&self`, `&mut self`, `self`) and generic functions work;
///   attributes, doc comments, visibility and generics are kept.
///
/// [`LockService::with_lock_opts`]: https://docs.rs/locks-core/latest/locks_core/struct.LockService.html#method.with_lock_opts
///
/// As with `with_lock_opts`, when the release after the body fails (the lease was lost, the
/// store could not be reached) the body's result is still returned: the work has happened.
/// Locks are not reentrant: an annotated function calling another one on the same key (in the
/// same task, through the same service) gets `LockError::SelfWait` at once, converted into its
/// error type, instead of waiting for itself (unless the service was built with
/// `detect_self_wait(false)`, when it waits until `wait` runs out).
///
/// # Cancel safety
///
/// The generated function is as cancel safe as `LockService::with_lock_opts`: dropping its
/// future while it waits for the lock holds nothing; dropping it while the body runs cancels
/// the body at its current `.await` and releases the lock in the background. The body itself
/// must tolerate being cancelled there.
///
/// # `on_contended = "skip"`
///
/// One attempt, no waiting: when someone else holds the lock the body does not run and the
/// function returns `Ok(None)`. The declared return type is `Result<Option<T>, E>`; **the body
/// is written as if the lock were always taken and returns `Result<T, E>`**, which the macro
/// wraps in `Some`. Any other declared type is a compile error, and so is `wait` together with
/// `skip`. Other acquire errors (an invalid key, a store failure, shutdown) are still
/// `Err(E::from(error))`. The call is `LockService::try_with_lock_opts`: the body runs and the
/// lock is released as in wait mode (on `Ok`, `Err`, panic and cancellation).
///
/// ```
/// use locks_core::{LockError, LockService};
/// use locks_macros::with_lock;
///
/// /// Run the nightly job unless another instance is running it.
/// #[with_lock(locks = locks, key = "job:{name}", on_contended = "skip")]
/// async fn run_job(locks: &LockService, name: &str) -> Result<Option<usize>, LockError> {
///     Ok(name.len()) // `Result<usize, _>`: the caller gets `Ok(Some(len))`
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), LockError> {
/// let locks = LockService::new(locks_memory::MemoryBackend::new())?;
/// assert_eq!(run_job(&locks, "nightly").await?, Some(7));
///
/// let held = locks.acquire("job:nightly").await?;
/// assert_eq!(run_job(&locks, "nightly").await?, None); // held elsewhere: skipped
/// held.release().await?;
/// # Ok(()) }
/// ```
///
/// # Keys from fields, free functions, the lease by reference
///
/// ```
/// use locks_core::{LeaseHandle, LockError, LockService};
/// use locks_macros::with_lock;
///
/// struct Order {
///     id: u64,
///     shop: (String, u32),
/// }
///
/// /// Locks `order:{shop}/{id}` for 30 s (renewed while the body runs), waits up to 2 s.
/// #[with_lock(locks = locks, key = "order:{order.shop.0}/{order.id}", ttl = "30s", wait = "2s")]
/// pub async fn ship(locks: LockService, order: &Order, lease: &LeaseHandle) -> Result<String, LockError> {
///     lease.ensure_held()?; // a cheap check before an irreversible step
///     Ok(format!("{} under fence {}", lease.key(), lease.fence()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), LockError> {
/// let locks = LockService::new(locks_memory::MemoryBackend::new())?;
/// let order = Order { id: 7, shop: ("eu".into(), 1) };
/// assert_eq!(ship(locks.clone(), &order).await?, "order:eu/7 under fence 1");
/// assert!(!locks.is_locked("order:eu/7").await?); // released
/// # Ok(()) }
/// ```
///
/// # Compile errors
///
/// Each names the problem: a missing `locks` or `key`, an unknown argument, an unknown or
/// malformed placeholder (on the key), a malformed duration, an `on_contended` other than
/// `"wait"`/`"skip"`, `wait` with `"skip"`, a function that is not `async` or does not return
/// a `Result` (or, with `"skip"`, a `Result<Option<T>, E>`), more than one `LeaseHandle`
/// parameter; and, from the type checker, an error type without `From<LockError>` (on the
/// error type), a field that does not exist or a value without `Display` (on the key).
#[proc_macro_attribute]
pub fn with_lock(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(attr, item, syn::parse_quote!(::locks_core))
}

/// `#[with_lock]` for users of the `locks` facade crate, which re-exports it as
/// `locks::with_lock`: the same attribute, whose generated code names the core `::locks`
/// instead of `::locks_core` (so a crate that depends on `locks` only needs no
/// `crate = ...`). See [`macro@with_lock`] for the arguments.
#[proc_macro_attribute]
pub fn with_lock_via_facade(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(attr, item, syn::parse_quote!(::locks))
}

/// The expansion, or the attribute's compile error next to a stand-in of the function.
fn expand_or_error(attr: TokenStream, item: TokenStream, default_crate: syn::Path) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    match expand::with_lock(attr.into(), item.into(), default_crate) {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            let mut out = e.into_compile_error();
            out.extend(expand::stand_in(original));
            out.into()
        }
    }
}

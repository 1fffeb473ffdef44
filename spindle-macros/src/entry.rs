//! Parsing and expansion shared by `#[spindle::main]` and `#[spindle::test]`.
//!
//! Everything here works on `proc_macro2` tokens so that it can be unit tested outside of a
//! procedural macro invocation (see the tests at the bottom of this file).
//!
//! Error policy: every problem is reported as a `compile_error!` spanning the offending tokens,
//! all problems of one invocation at once. The annotated function is always emitted as well, so
//! that the rest of the crate (and rust-analyzer) still sees it, and so that the only errors the
//! user sees are ours: a left-over `async fn main` would add "`main` function is not allowed to be
//! `async`", a test with parameters "functions used as tests can not have any arguments".
//! So on error the function is still expanded, as closely to what was meant as possible:
//! options that were understood are used (defaults for the rest), a missing `async` is fine (the
//! body runs inside `async move {}` all the same), parameters become locals of the right type
//! bound to a diverging placeholder (never run: the crate does not compile), and a redundant
//! `#[test]` is dropped. Only a test with a `self` receiver, which cannot be turned into a free
//! function, and items that are not functions are emitted unchanged.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, Meta, MetaNameValue, Token};

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[spindle::main]`
    Main,
    /// `#[spindle::test]`
    Test,
}

impl Kind {
    /// The attribute's name as the user writes it, for messages.
    fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[spindle::main]",
            Kind::Test => "#[spindle::test]",
        }
    }

    fn default_flavor(self) -> Flavor {
        match self {
            Kind::Main => Flavor::MultiThread,
            Kind::Test => Flavor::CurrentThread,
        }
    }
}

/// The runtime flavour selected with `flavor = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    CurrentThread,
    MultiThread,
    PerCore,
}

impl Flavor {
    const NAMES: [&'static str; 3] = ["current_thread", "multi_thread", "per_core"];

    fn from_name(name: &str) -> Option<Flavor> {
        match name {
            "current_thread" => Some(Flavor::CurrentThread),
            "multi_thread" => Some(Flavor::MultiThread),
            "per_core" => Some(Flavor::PerCore),
            _ => None,
        }
    }

    /// Whether the flavour has a number of threads to set.
    fn has_threads(self) -> bool {
        matches!(self, Flavor::MultiThread | Flavor::PerCore)
    }
}

/// The options of one attribute, after validation.
struct Config {
    flavor: Flavor,
    /// The value and the span of the literal it came from.
    worker_threads: Option<(usize, Span)>,
    /// `start_paused = <bool>` as given (value and span of the literal); `None` when left out, in
    /// which case the builder's default (a running clock) applies and nothing is emitted.
    start_paused: Option<(bool, Span)>,
    /// Path to the spindle crate: `::spindle` unless `crate = "..."` says otherwise.
    krate: TokenStream,
}

/// Every option, in the order the "expected ..." part of messages lists them.
const OPTIONS: [&str; 4] = ["flavor", "worker_threads", "start_paused", "crate"];

/// Collects every error of one invocation so they are all reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn spanned_at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn to_compile_errors(&self) -> TokenStream {
        match &self.0 {
            Some(error) => error.to_compile_error(),
            None => TokenStream::new(),
        }
    }
}

/// Expands `#[spindle::main(args)]` or `#[spindle::test(args)]` applied to `item`.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();

    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(parse_error) => {
            // Not a function: say so plainly rather than syn's "expected `fn`", when the item
            // is at least some other well-formed item.
            let error = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(other) => syn::Error::new_spanned(
                    item_head(&other),
                    format!("{} can only be applied to an `async fn`", kind.attr()),
                ),
                Err(_) => parse_error,
            };
            errors.push(error);
            // Still validate the options, so that all mistakes show up at once.
            parse_config(kind, args, &mut errors);
            let compile_errors = errors.to_compile_errors();
            return quote! { #compile_errors #item };
        }
    };

    let config = parse_config(kind, args, &mut errors);
    check_signature(kind, &func, &mut errors);
    if errors.is_empty() {
        return expand_fn(kind, &config, func);
    }

    let compile_errors = errors.to_compile_errors();
    if signature_is_expandable(kind, &func) {
        let expanded = expand_fn(kind, &config, func);
        quote! { #compile_errors #expanded }
    } else {
        quote! { #compile_errors #item }
    }
}

/// The span to blame when the attribute sits on something that is not a function: the item's
/// first tokens (keyword and name) rather than its whole body.
fn item_head(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Struct(s) => {
            let (kw, ident) = (&s.struct_token, &s.ident);
            quote! { #kw #ident }
        }
        syn::Item::Enum(e) => {
            let (kw, ident) = (&e.enum_token, &e.ident);
            quote! { #kw #ident }
        }
        syn::Item::Mod(m) => {
            let (kw, ident) = (&m.mod_token, &m.ident);
            quote! { #kw #ident }
        }
        syn::Item::Impl(i) => i.impl_token.to_token_stream(),
        syn::Item::Const(c) => {
            let (kw, ident) = (&c.const_token, &c.ident);
            quote! { #kw #ident }
        }
        syn::Item::Static(s) => {
            let (kw, ident) = (&s.static_token, &s.ident);
            quote! { #kw #ident }
        }
        other => other.to_token_stream(),
    }
}

/// Parses and validates the attribute's arguments. Problems go to `errors`; the returned config
/// holds every option that was understood and defaults for the rest.
fn parse_config(kind: Kind, args: TokenStream, errors: &mut Errors) -> Config {
    let mut config =
        Config { flavor: kind.default_flavor(), worker_threads: None, start_paused: None, krate: quote! { ::spindle } };

    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return config;
        }
    };

    let mut seen: Vec<String> = Vec::new();
    // `worker_threads = N` as written, checked against the flavour once every option is read.
    let mut worker_threads: Option<(&MetaNameValue, usize, Span)> = None;
    let mut flavor_given = false;

    for meta in &metas {
        let name_value = match meta {
            Meta::NameValue(nv) => nv,
            Meta::Path(path) => {
                let name = path_name(path);
                if OPTIONS.contains(&name.as_str()) {
                    errors.spanned(path, format!("`{name}` needs a value: {}", example(&name)));
                } else {
                    errors.spanned(path, unknown_option(&name));
                }
                continue;
            }
            Meta::List(list) => {
                let name = path_name(&list.path);
                if OPTIONS.contains(&name.as_str()) {
                    errors.spanned(list, format!("`{name}` is written {}", example(&name)));
                } else {
                    errors.spanned(&list.path, unknown_option(&name));
                }
                continue;
            }
        };

        let name = path_name(&name_value.path);
        if !OPTIONS.contains(&name.as_str()) {
            errors.spanned(&name_value.path, unknown_option(&name));
            continue;
        }
        if seen.contains(&name) {
            errors.spanned(meta, format!("duplicate option `{name}`: it may be given only once"));
            continue;
        }
        seen.push(name.clone());

        let value = &name_value.value;
        match name.as_str() {
            "flavor" => {
                let Some(lit) = lit_str(value) else {
                    errors.spanned(value, format!("`flavor` expects a string literal: {}", example("flavor")));
                    continue;
                };
                match Flavor::from_name(&lit.value()) {
                    Some(flavor) => {
                        config.flavor = flavor;
                        flavor_given = true;
                    }
                    None => {
                        let mut message = format!(
                            "unknown runtime flavor \"{}\"; expected \"current_thread\", \"multi_thread\" or \"per_core\"",
                            lit.value()
                        );
                        if let Some(close) = closest(&lit.value(), &Flavor::NAMES) {
                            message.push_str(&format!(" (did you mean \"{close}\"?)"));
                        }
                        errors.spanned(lit, message);
                    }
                }
            }
            "worker_threads" => {
                let Some(lit) = lit_int(value) else {
                    let message = if is_negative_int(value) {
                        "`worker_threads` must be at least 1".to_string()
                    } else {
                        format!("`worker_threads` expects an integer literal: {}", example("worker_threads"))
                    };
                    errors.spanned(value, message);
                    continue;
                };
                match lit.base10_parse::<usize>() {
                    Ok(0) => errors
                        .spanned(lit, "`worker_threads` must be at least 1 (leave it out to use one worker per CPU)"),
                    Ok(n) => worker_threads = Some((name_value, n, lit.span())),
                    Err(error) => errors.spanned(lit, format!("`worker_threads` must be a positive `usize`: {error}")),
                }
            }
            "start_paused" => match lit_bool(value) {
                Some(lit) => config.start_paused = Some((lit.value, lit.span)),
                None => {
                    let message = match lit_str(value).map(|lit| lit.value()) {
                        // `start_paused = "true"`: say what is wrong with it precisely.
                        Some(text) if text == "true" || text == "false" => {
                            format!("`start_paused` expects a boolean literal, not a string: `start_paused = {text}`")
                        }
                        _ => format!("`start_paused` expects a boolean literal: {}", example("start_paused")),
                    };
                    errors.spanned(value, message);
                }
            },
            "crate" => {
                let Some(lit) = lit_str(value) else {
                    errors.spanned(value, format!("`crate` expects a string literal: {}", example("crate")));
                    continue;
                };
                match lit.parse::<syn::Path>() {
                    Ok(path) => config.krate = path.into_token_stream(),
                    Err(_) => errors
                        .spanned(lit, format!("`crate` must be a path such as \"::spindle\", not \"{}\"", lit.value())),
                }
            }
            _ => unreachable!("every name in OPTIONS is handled"),
        }
    }

    if let Some((name_value, n, span)) = worker_threads {
        if config.flavor.has_threads() {
            config.worker_threads = Some((n, span));
        } else if flavor_given {
            errors.spanned(
                name_value,
                "`worker_threads` can only be used with `flavor = \"multi_thread\"` or `flavor = \"per_core\"`",
            );
        } else {
            errors.spanned(
                name_value,
                format!(
                    "`worker_threads` needs the multi-thread runtime, but {} defaults to \
                     \"current_thread\"; add `flavor = \"multi_thread\"`",
                    kind.attr()
                ),
            );
        }
    }

    if let (Flavor::PerCore, Some((true, span))) = (config.flavor, config.start_paused) {
        errors.spanned_at(
            span,
            "`start_paused = true` is not available with `flavor = \"per_core\"` (the per-core runtime has \
             no virtual time); use \"current_thread\" or \"multi_thread\"",
        );
    }

    config
}

/// The last segment of an option's path (`crate` included), or the whole path for messages.
fn path_name(path: &syn::Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => path.to_token_stream().to_string().replace(' ', ""),
    }
}

fn unknown_option(name: &str) -> String {
    let (last, rest) = OPTIONS.split_last().expect("OPTIONS is not empty");
    let rest: Vec<String> = rest.iter().map(|option| format!("`{option}`")).collect();
    let mut message = format!("unknown option `{name}`; expected {} or `{last}`", rest.join(", "));
    if let Some(close) = closest(name, &OPTIONS) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    message
}

fn example(option: &str) -> &'static str {
    match option {
        "flavor" => "`flavor = \"current_thread\"` or `flavor = \"multi_thread\"`",
        "worker_threads" => "`worker_threads = 4`",
        "start_paused" => "`start_paused = true` or `start_paused = false`",
        "crate" => "`crate = \"::spindle\"`",
        _ => "",
    }
}

fn lit_str(expr: &Expr) -> Option<&syn::LitStr> {
    match peel(expr) {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Some(lit),
        _ => None,
    }
}

fn lit_bool(expr: &Expr) -> Option<&syn::LitBool> {
    match peel(expr) {
        Expr::Lit(ExprLit { lit: Lit::Bool(lit), .. }) => Some(lit),
        _ => None,
    }
}

fn lit_int(expr: &Expr) -> Option<&syn::LitInt> {
    match peel(expr) {
        Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) if !lit.base10_digits().starts_with('-') => Some(lit),
        _ => None,
    }
}

/// `-1` (a negation of a literal, or a negative literal token).
fn is_negative_int(expr: &Expr) -> bool {
    match peel(expr) {
        Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), expr, .. }) => {
            matches!(peel(expr), Expr::Lit(ExprLit { lit: Lit::Int(_), .. }))
        }
        Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) => lit.base10_digits().starts_with('-'),
        _ => false,
    }
}

/// Looks through the invisible groups that `macro_rules!` puts around `$x:expr` fragments.
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => peel(&group.expr),
        other => other,
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Reports what about the function itself prevents the expansion.
fn check_signature(kind: Kind, func: &syn::ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("{} can only be applied to an `async fn`; add `async` before `fn`", kind.attr()),
        );
    }
    if !sig.inputs.is_empty() && !params_allowed(kind, sig) {
        let message = match kind {
            Kind::Main => "the `main` function cannot take parameters; use `std::env::args()` instead",
            Kind::Test => "a test function cannot take parameters",
        };
        errors.spanned(&sig.inputs, message);
    }
    if kind == Kind::Test {
        if let Some(attr) = func.attrs.iter().find(|attr| is_test_attribute(attr)) {
            errors.spanned(attr, "duplicate test attribute: #[spindle::test] already adds `#[test]`; remove this one");
        }
    }
}

/// Whether `expand_fn` produces code whose only errors are the ones `check_signature` reports.
fn signature_is_expandable(kind: Kind, func: &syn::ItemFn) -> bool {
    params_allowed(kind, &func.sig) || func.sig.receiver().is_none()
}

/// `#[spindle::main]` on a function other than `main` (a plain blocking wrapper) may take
/// parameters: they are moved into the body. `main` and tests may not.
fn params_allowed(kind: Kind, sig: &syn::Signature) -> bool {
    kind == Kind::Main && sig.ident != "main"
}

/// `#[test]`, `#[core::prelude::v1::test]`, `#[::std::prelude::rust_2021::test]` and the like.
fn is_test_attribute(attr: &Attribute) -> bool {
    if !matches!(attr.meta, Meta::Path(_)) {
        return false;
    }
    let segments: Vec<String> = attr.path().segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [only] => only == "test",
        [krate, prelude, _edition, test] => {
            (krate == "core" || krate == "std") && prelude == "prelude" && test == "test"
        }
        _ => false,
    }
}

/// Turns `async fn f() -> T { body }` into a plain `fn f() -> T` that builds a runtime and blocks
/// on `async move { body }`.
///
/// On a function `check_signature` rejected (but `signature_is_expandable` accepts), this yields
/// the closest function that compiles, so that only the reported errors are shown.
fn expand_fn(kind: Kind, config: &Config, func: syn::ItemFn) -> TokenStream {
    let syn::ItemFn { attrs, vis, mut sig, block } = func;
    sig.asyncness = None;

    // Error path only: parameters `main` or a test cannot have become locals of the same names
    // and types, so that the body still type-checks without a second error about the signature.
    let rejected_params = if params_allowed(kind, &sig) { Default::default() } else { std::mem::take(&mut sig.inputs) };
    let params: Vec<TokenStream> = rejected_params
        .into_iter()
        .filter_map(|arg| match arg {
            syn::FnArg::Typed(syn::PatType { pat, ty, .. }) => Some(quote! {
                let #pat: #ty = __spindle_unreachable();
            }),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let params = if params.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            fn __spindle_unreachable<T>() -> T {
                ::core::unreachable!()
            }
            #(#params)*
        }
    };

    // The body's inner attributes (`#![allow(..)]`) were parsed into `attrs`; they must stay
    // inside the function. A user-written `#[test]` (an error, already reported) is dropped.
    let (inner_attrs, outer_attrs): (Vec<Attribute>, Vec<Attribute>) = attrs
        .into_iter()
        .filter(|attr| kind != Kind::Test || !is_test_attribute(attr))
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));

    let krate = &config.krate;
    let builder = match config.flavor {
        // Only this thread ever drives it: bound, its io_uring is single-issuer (less kernel work
        // per completion; see `Builder::bind_to_driving_thread`).
        Flavor::CurrentThread => quote! { #krate::runtime::Builder::new_current_thread().bind_to_driving_thread(true) },
        Flavor::MultiThread => quote! { #krate::runtime::Builder::new_multi_thread() },
        Flavor::PerCore => quote! { #krate::runtime::Builder::new_per_core() },
    };
    let worker_threads = config.worker_threads.map(|(n, span)| {
        let mut n = proc_macro2::Literal::usize_unsuffixed(n);
        n.set_span(span);
        quote_spanned! {span=> .worker_threads(#n) }
    });
    let start_paused = config.start_paused.map(|(paused, span)| {
        let paused = syn::LitBool::new(paused, span);
        quote_spanned! {span=> .start_paused(#paused) }
    });

    // `block_on(body)` carries the span of the end of the body, so that a mismatch between what
    // the body evaluates to and the declared return type is reported there rather than on the
    // attribute. The runtime's construction keeps the attribute's span: a failure to build it is
    // reported (by `#[track_caller]` `expect`) at the attribute.
    let last_span = block.stmts.last().map(|stmt| stmt.span()).unwrap_or_else(|| block.brace_token.span.close());
    // Only the location: the names (`body`, `runtime`) resolve at the call site, as `let
    // runtime` below does. The body's own span would give them its hygiene, which differs when
    // the statements come from a `macro_rules!` that writes the attribute: `runtime` did not
    // resolve there.
    let last_span = proc_macro2::Span::call_site().located_at(last_span);
    let body = quote_spanned! {last_span=>
        let body = async move #block;
    };
    let block_on = quote_spanned! {last_span=>
        return runtime.block_on(body);
    };

    let test_attr = match kind {
        Kind::Test => quote! { #[::core::prelude::v1::test] },
        Kind::Main => TokenStream::new(),
    };

    quote! {
        #test_attr
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #params
            #body
            #[allow(clippy::expect_used, clippy::needless_return)]
            {
                let runtime = #builder
                    #worker_threads
                    #start_paused
                    .build()
                    .expect("spindle: failed to build the runtime");
                #block_on
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(kind: Kind, args: &str, item: &str) -> String {
        let args: TokenStream = args.parse().unwrap();
        let item: TokenStream = item.parse().unwrap();
        let out = expand(kind, args, item);
        // Must always be a well-formed item list.
        syn::parse2::<syn::File>(out.clone()).expect("expansion is not a valid file");
        out.to_string()
    }

    fn squash(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Expected expansions are compared after normalising whitespace.
    fn assert_expands(kind: Kind, args: &str, item: &str, expected: &str) {
        let got: TokenStream = expand(kind, args.parse().unwrap(), item.parse().unwrap());
        let expected: TokenStream = expected.parse().unwrap();
        assert_eq!(squash(&got.to_string()), squash(&expected.to_string()));
    }

    fn errors_of(kind: Kind, args: &str, item: &str) -> Vec<String> {
        let out = expand_str(kind, args, item);
        out.split("compile_error !")
            .skip(1)
            .map(|rest| {
                let start = rest.find('"').unwrap();
                let end = rest[start + 1..].find("\" }").unwrap() + start + 1;
                rest[start + 1..end].replace("\\\"", "\"")
            })
            .collect()
    }

    #[test]
    fn main_defaults_to_multi_thread() {
        assert_expands(
            Kind::Main,
            "",
            "async fn main() { println!(\"hi\"); }",
            r#"
            fn main() {
                let body = async move { println!("hi"); };
                #[allow(clippy::expect_used, clippy::needless_return)]
                {
                    let runtime = ::spindle::runtime::Builder::new_multi_thread()
                        .build()
                        .expect("spindle: failed to build the runtime");
                    return runtime.block_on(body);
                }
            }
            "#,
        );
    }

    #[test]
    fn test_defaults_to_current_thread_and_adds_test_attr() {
        assert_expands(
            Kind::Test,
            "",
            "#[should_panic(expected = \"boom\")] #[ignore] async fn t() -> Result<(), String> { Ok(()) }",
            r#"
            #[::core::prelude::v1::test]
            #[should_panic(expected = "boom")]
            #[ignore]
            fn t() -> Result<(), String> {
                let body = async move { Ok(()) };
                #[allow(clippy::expect_used, clippy::needless_return)]
                {
                    let runtime = ::spindle::runtime::Builder::new_current_thread()
                        .bind_to_driving_thread(true)
                        .build()
                        .expect("spindle: failed to build the runtime");
                    return runtime.block_on(body);
                }
            }
            "#,
        );
    }

    #[test]
    fn options_flavor_worker_threads_crate() {
        assert_expands(
            Kind::Test,
            "flavor = \"multi_thread\", worker_threads = 3, crate = \"my::rt\"",
            "pub(crate) async fn t() {}",
            r#"
            #[::core::prelude::v1::test]
            pub(crate) fn t() {
                let body = async move {};
                #[allow(clippy::expect_used, clippy::needless_return)]
                {
                    let runtime = my::rt::runtime::Builder::new_multi_thread()
                        .worker_threads(3)
                        .build()
                        .expect("spindle: failed to build the runtime");
                    return runtime.block_on(body);
                }
            }
            "#,
        );
        // A suffixed literal is accepted; the emitted one is always an unsuffixed usize.
        let out = expand_str(Kind::Main, "worker_threads = 2usize,", "async fn main() {}");
        assert!(out.contains(". worker_threads (2)"), "{out}");
        let out = expand_str(Kind::Main, "flavor = \"current_thread\"", "async fn main() {}");
        assert!(out.contains("new_current_thread"), "{out}");
        let out = expand_str(Kind::Test, "flavor = \"per_core\", worker_threads = 2", "async fn t() {}");
        assert!(out.contains("new_per_core () . worker_threads (2)"), "{out}");
    }

    #[test]
    fn start_paused_with_either_flavor() {
        assert_expands(
            Kind::Test,
            "start_paused = true",
            "async fn t() {}",
            r#"
            #[::core::prelude::v1::test]
            fn t() {
                let body = async move {};
                #[allow(clippy::expect_used, clippy::needless_return)]
                {
                    let runtime = ::spindle::runtime::Builder::new_current_thread()
                        .bind_to_driving_thread(true)
                        .start_paused(true)
                        .build()
                        .expect("spindle: failed to build the runtime");
                    return runtime.block_on(body);
                }
            }
            "#,
        );
        // With the multi-thread flavor, in any order among the other options.
        assert_expands(
            Kind::Main,
            "start_paused = true, worker_threads = 2, flavor = \"multi_thread\", crate = \"my::rt\"",
            "async fn main() {}",
            r#"
            fn main() {
                let body = async move {};
                #[allow(clippy::expect_used, clippy::needless_return)]
                {
                    let runtime = my::rt::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .start_paused(true)
                        .build()
                        .expect("spindle: failed to build the runtime");
                    return runtime.block_on(body);
                }
            }
            "#,
        );
        // An explicit `false` is passed on as written; leaving the option out emits nothing.
        let out = expand_str(Kind::Main, "start_paused = false", "async fn main() {}");
        assert!(out.contains(". start_paused (false) . build ()"), "{out}");
        let out = expand_str(Kind::Test, "flavor = \"multi_thread\"", "async fn t() {}");
        assert!(!out.contains("start_paused"), "{out}");
        // The parsed value is kept (with the literal's span, for the emitted call).
        let args: TokenStream = "start_paused = true".parse().unwrap();
        let mut errors = Errors::default();
        let config = parse_config(Kind::Test, args, &mut errors);
        assert!(errors.is_empty());
        assert!(matches!(config.start_paused, Some((true, _))));
    }

    #[test]
    fn rejects_bad_start_paused() {
        assert_eq!(
            errors_of(Kind::Test, "start_paused = 1", "async fn t() {}"),
            ["`start_paused` expects a boolean literal: `start_paused = true` or `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_paused = yes", "async fn t() {}"),
            ["`start_paused` expects a boolean literal: `start_paused = true` or `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_paused = \"yes\"", "async fn t() {}"),
            ["`start_paused` expects a boolean literal: `start_paused = true` or `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "start_paused = \"true\"", "async fn main() {}"),
            ["`start_paused` expects a boolean literal, not a string: `start_paused = true`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "start_paused = \"false\"", "async fn main() {}"),
            ["`start_paused` expects a boolean literal, not a string: `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_paused", "async fn t() {}"),
            ["`start_paused` needs a value: `start_paused = true` or `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_paused(true)", "async fn t() {}"),
            ["`start_paused` is written `start_paused = true` or `start_paused = false`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_paused = true, start_paused = false", "async fn t() {}"),
            ["duplicate option `start_paused`: it may be given only once"]
        );
        // Near misses get a suggestion; an unrelated word does not.
        assert_eq!(
            errors_of(Kind::Test, "startpaused = true", "async fn t() {}"),
            ["unknown option `startpaused`; expected `flavor`, `worker_threads`, `start_paused` or `crate` (did you mean `start_paused`?)"]
        );
        assert_eq!(
            errors_of(Kind::Test, "start_pasued = true", "async fn t() {}"),
            ["unknown option `start_pasued`; expected `flavor`, `worker_threads`, `start_paused` or `crate` (did you mean `start_paused`?)"]
        );
        // A bad value still expands the function, without the option.
        let out = expand_str(Kind::Test, "start_paused = 1", "async fn t() {}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains(". start_paused"), "{out}");
        assert!(!out.contains("async fn"), "{out}");
    }

    #[test]
    fn inner_attributes_stay_inside_the_body() {
        let out = expand_str(Kind::Main, "", "/// docs\n async fn main() { #![allow(unused)] let x = 1; }");
        let file: syn::File = syn::parse_str(&out).unwrap();
        let syn::Item::Fn(f) = &file.items[0] else { panic!("{out}") };
        assert!(f.attrs.iter().any(|a| matches!(a.style, syn::AttrStyle::Inner(_))));
        assert!(f.attrs.iter().any(|a| a.path().is_ident("doc")));
        assert!(f.sig.asyncness.is_none());
    }

    #[test]
    fn return_type_and_qualifiers_are_kept() {
        let out =
            expand_str(Kind::Main, "", "pub async fn main() -> Result<(), Box<dyn std::error::Error>> { Ok(()) }");
        let file: syn::File = syn::parse_str(&out).unwrap();
        let syn::Item::Fn(f) = &file.items[0] else { panic!("{out}") };
        assert_eq!(
            squash(&f.sig.output.to_token_stream().to_string()),
            "-> Result < () , Box < dyn std :: error :: Error > >"
        );
        assert!(matches!(f.vis, syn::Visibility::Public(_)));
    }

    #[test]
    fn rejects_non_async_fn_but_still_expands_it() {
        let out = expand_str(Kind::Main, "", "fn main() {}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("fn main () { let body = async move { } ;"), "{out}");
        assert_eq!(
            errors_of(Kind::Test, "", "fn t() {}"),
            ["#[spindle::test] can only be applied to an `async fn`; add `async` before `fn`"]
        );
    }

    #[test]
    fn rejects_parameters() {
        // The parameters become locals so the body still type-checks; nothing else is reported.
        let out = expand_str(Kind::Main, "", "async fn main(mut args: Vec<String>) { args.clear(); }");
        assert!(out.contains("fn main ()"), "{out}");
        assert!(out.contains("let mut args : Vec < String > = __spindle_unreachable () ;"), "{out}");
        // A test method cannot be made a free function: it is emitted unchanged.
        let out = expand_str(Kind::Test, "", "async fn t(&self) {}");
        assert!(out.ends_with("async fn t (& self) { }"), "{out}");
        // `#[spindle::main]` on another function (a blocking wrapper) may take parameters.
        assert_eq!(
            expand_str(Kind::Main, "", "async fn run(&self, n: u8) -> u8 { n }").matches("compile_error").count(),
            0
        );
        let out = expand_str(Kind::Main, "", "async fn run(&self, n: u8) -> u8 { n }");
        assert!(out.contains("fn run (& self , n : u8) -> u8"), "{out}");
        assert_eq!(
            errors_of(Kind::Main, "", "async fn main(args: Vec<String>) {}"),
            ["the `main` function cannot take parameters; use `std::env::args()` instead"]
        );
        assert_eq!(errors_of(Kind::Test, "", "async fn t(x: u8) {}"), ["a test function cannot take parameters"]);
    }

    #[test]
    fn rejects_unknown_and_malformed_options() {
        assert_eq!(
            errors_of(Kind::Main, "worker_thread = 2", "async fn main() {}"),
            ["unknown option `worker_thread`; expected `flavor`, `worker_threads`, `start_paused` or `crate` (did you mean `worker_threads`?)"]
        );
        assert_eq!(
            errors_of(Kind::Main, "start_pause = true", "async fn main() {}"),
            ["unknown option `start_pause`; expected `flavor`, `worker_threads`, `start_paused` or `crate` (did you mean `start_paused`?)"]
        );
        assert_eq!(
            errors_of(Kind::Test, "unhandled_panic = \"shutdown_runtime\"", "async fn t() {}"),
            ["unknown option `unhandled_panic`; expected `flavor`, `worker_threads`, `start_paused` or `crate`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "multi_thread", "async fn main() {}"),
            ["unknown option `multi_thread`; expected `flavor`, `worker_threads`, `start_paused` or `crate`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "flavor", "async fn main() {}"),
            ["`flavor` needs a value: `flavor = \"current_thread\"` or `flavor = \"multi_thread\"`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "flavor = multi_thread", "async fn main() {}"),
            ["`flavor` expects a string literal: `flavor = \"current_thread\"` or `flavor = \"multi_thread\"`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "worker_threads = \"4\"", "async fn main() {}"),
            ["`worker_threads` expects an integer literal: `worker_threads = 4`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "worker_threads = -1", "async fn main() {}"),
            ["`worker_threads` must be at least 1"]
        );
        assert_eq!(
            errors_of(Kind::Main, "crate = spindle", "async fn main() {}"),
            ["`crate` expects a string literal: `crate = \"::spindle\"`"]
        );
        assert_eq!(
            errors_of(Kind::Main, "crate = \"not a path\"", "async fn main() {}"),
            ["`crate` must be a path such as \"::spindle\", not \"not a path\""]
        );
    }

    #[test]
    fn rejects_bad_flavor_and_worker_threads() {
        assert_eq!(
            errors_of(Kind::Main, "flavor = \"multi_threaded\"", "async fn main() {}"),
            ["unknown runtime flavor \"multi_threaded\"; expected \"current_thread\", \"multi_thread\" or \"per_core\" (did you mean \"multi_thread\"?)"]
        );
        assert_eq!(
            errors_of(Kind::Main, "worker_threads = 0", "async fn main() {}"),
            ["`worker_threads` must be at least 1 (leave it out to use one worker per CPU)"]
        );
        assert_eq!(
            errors_of(Kind::Main, "flavor = \"current_thread\", worker_threads = 2", "async fn main() {}"),
            ["`worker_threads` can only be used with `flavor = \"multi_thread\"` or `flavor = \"per_core\"`"]
        );
        assert_eq!(
            errors_of(Kind::Test, "worker_threads = 2", "async fn t() {}"),
            ["`worker_threads` needs the multi-thread runtime, but #[spindle::test] defaults to \"current_thread\"; add `flavor = \"multi_thread\"`"]
        );
        // Order does not matter.
        assert!(errors_of(Kind::Test, "worker_threads = 2, flavor = \"multi_thread\"", "async fn t() {}").is_empty());
    }

    #[test]
    fn rejects_duplicates_and_reports_everything_at_once() {
        assert_eq!(
            errors_of(Kind::Main, "flavor = \"multi_thread\", flavor = \"current_thread\"", "async fn main() {}"),
            ["duplicate option `flavor`: it may be given only once"]
        );
        let errors = errors_of(Kind::Main, "bogus = 1, worker_threads = 0", "fn main() {}");
        assert_eq!(errors.len(), 3, "{errors:?}");
        let errors = errors_of(Kind::Test, "start_paused = 0, crate = 1, start_paused = true", "async fn t() {}");
        assert_eq!(
            errors,
            [
                "`start_paused` expects a boolean literal: `start_paused = true` or `start_paused = false`",
                "`crate` expects a string literal: `crate = \"::spindle\"`",
                "duplicate option `start_paused`: it may be given only once",
            ]
        );
    }

    #[test]
    fn option_errors_still_expand_the_function() {
        // The function is still turned into a plain fn (defaults for what was wrong), so no
        // second error about `async fn main` follows the real one.
        let out = expand_str(Kind::Main, "flavor = \"nope\"", "async fn main() {}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("new_multi_thread"), "{out}");
        assert!(!out.contains("async fn"), "{out}");
    }

    #[test]
    fn rejects_duplicate_test_attribute() {
        assert_eq!(
            errors_of(Kind::Test, "", "#[test] async fn t() {}"),
            ["duplicate test attribute: #[spindle::test] already adds `#[test]`; remove this one"]
        );
        assert_eq!(errors_of(Kind::Test, "", "#[::core::prelude::v1::test] async fn t() {}").len(), 1);
        // Still expanded, with exactly one test attribute.
        let out = expand_str(Kind::Test, "", "#[test] async fn t() {}");
        assert!(!out.contains("# [test]"), "{out}");
        assert_eq!(out.matches("v1 :: test]").count(), 1, "{out}");
        // Other attributes whose last segment is `test` are not the built-in one.
        assert!(errors_of(Kind::Test, "", "#[other::test] async fn t() {}").is_empty());
    }

    #[test]
    fn rejects_non_functions() {
        let out = expand_str(Kind::Main, "", "struct S;");
        assert!(out.contains("can only be applied to an `async fn`"), "{out}");
        assert!(out.ends_with("struct S ;"), "{out}");
    }

    #[test]
    fn closest_suggests_only_near_misses() {
        assert_eq!(closest("curent_thread", &Flavor::NAMES), Some("current_thread"));
        assert_eq!(closest("multithread", &Flavor::NAMES), Some("multi_thread"));
        assert_eq!(closest("x", &OPTIONS), None);
        assert_eq!(closest("flavour", &OPTIONS), Some("flavor"));
        assert_eq!(closest("start_pause", &OPTIONS), Some("start_paused"));
        assert_eq!(closest("paused", &OPTIONS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

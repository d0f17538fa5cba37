//! The origin parser and matcher: arbitrary `Origin`, `Host` and allowlist
//! pattern text never panics, and matching ignores the host's case.
//! Input: `origin\nhost\npattern`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_token_auth::OriginPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\n');
    let (origin, host, pattern) = (parts.next(), parts.next(), parts.next());
    let same_host = OriginPolicy::same_host();
    let verdict = same_host.check(origin, host).is_ok();
    let upper = origin.map(str::to_ascii_uppercase);
    if origin.is_some_and(|o| o != "null") {
        assert_eq!(verdict, same_host.check(upper.as_deref(), host).is_ok(), "case changed the verdict");
    }
    if let Some(pattern) = pattern {
        if let Ok(policy) = OriginPolicy::allowlist([pattern]) {
            let _ = policy.check(origin, host);
        }
        let _ = OriginPolicy::same_host().allow(pattern);
    }
    let _ = OriginPolicy::any().refuse_missing_origin().check(origin, host);
});

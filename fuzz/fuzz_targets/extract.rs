//! Extraction from arbitrary header sets and URIs: never panics, and whatever
//! it yields is a token (visible ASCII, 1..=max bytes).
//! Input: the first line is the URI, every other line `name:value`.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use ws_token_auth::OriginPolicy;
use ws_token_auth::extract::{Extractor, TokenSource, offered_protocols};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let uri = lines
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .and_then(|text| text.parse::<Uri>().ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines.take(128) {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        {
            headers.append(name, value);
        }
    }
    let max = 64;
    let extractor = Extractor::new([
        TokenSource::cookie("key"),
        TokenSource::authorization(["Token", "Bearer"]),
        TokenSource::subprotocol("token."),
        TokenSource::query("token"),
    ])
    .max_token_len(max);
    if let Ok(Some(credential)) = extractor.extract(&headers, &uri) {
        let value = credential.token().expose_secret();
        assert!(!value.is_empty() && value.len() <= max);
        assert!(value.bytes().all(|b| (b'!'..=b'~').contains(&b)));
    }
    let _ = Extractor::default().extract(&headers, &uri);
    let _ = OriginPolicy::same_host().check_request(&headers, &uri);
    let _ = offered_protocols(&headers, "token.").count();
});

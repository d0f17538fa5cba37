//! Properties of extraction and the origin policy, checked on generated input
//! (proptest).

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use proptest::prelude::*;
use ws_token_auth::OriginPolicy;
use ws_token_auth::extract::{Extractor, TokenSource};

fn all_sources() -> Extractor {
    Extractor::new([
        TokenSource::cookie("key"),
        TokenSource::authorization(["Token", "Bearer"]),
        TokenSource::subprotocol("token."),
        TokenSource::query("token"),
    ])
}

/// Header names that matter, and a few that do not.
fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(http::header::COOKIE),
        Just(http::header::AUTHORIZATION),
        Just(http::header::SEC_WEBSOCKET_PROTOCOL),
        Just(http::header::ORIGIN),
        Just(http::header::HOST),
        "[a-z][a-z0-9-]{0,12}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
    ]
}

/// Any value a header can carry: visible ASCII, spaces, tabs and obs-text.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..300)
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap_or(HeaderValue::from_static("")))
}

fn token() -> impl Strategy<Value = String> {
    "[!#-+--:<-~]{1,64}" // visible ASCII without `"`, `,`, `;` (a cookie value's own delimiters)
}

fn other_cookie_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,10}",
        Just("Key".to_owned()),
        Just("KEY".to_owned()),
        Just("keys".to_owned()),
        Just("monkey".to_owned()),
        Just("key_".to_owned()),
        Just("xkey".to_owned()),
    ]
    .prop_filter("not the configured name", |name| name != "key")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn extraction_never_panics_and_only_yields_tokens(
        headers in proptest::collection::vec((header_name(), header_value()), 0..12),
        query in "[ -~]{0,80}",
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value);
        }
        let uri = format!("/ws?{}", query.replace(['#', ' '], "")).parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/ws"));
        let extractor = all_sources().max_token_len(100);
        if let Ok(Some(credential)) = extractor.extract(&map, &uri) {
            let value = credential.token().expose_secret();
            prop_assert!(!value.is_empty() && value.len() <= 100);
            prop_assert!(value.bytes().all(|b| (b'!'..=b'~').contains(&b)));
        }
    }

    #[test]
    fn a_valid_token_is_found_anywhere_among_other_cookies(
        token in token(),
        others in proptest::collection::vec((other_cookie_name(), "[A-Za-z0-9=._-]{0,20}"), 0..20),
        position in 0usize..21,
        lines in 1usize..4,
        spacing in prop_oneof![Just(";"), Just("; "), Just(" ;  ")],
    ) {
        let mut pairs: Vec<String> = others.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.insert(position.min(pairs.len()), format!("key={token}"));
        let mut map = HeaderMap::new();
        let per_line = pairs.len().div_ceil(lines);
        for chunk in pairs.chunks(per_line.max(1)) {
            map.append(http::header::COOKIE, HeaderValue::from_str(&chunk.join(spacing)).unwrap());
        }
        let extractor = Extractor::new([TokenSource::cookie("key")]);
        let found = extractor.extract(&map, &Uri::from_static("/")).unwrap().unwrap();
        prop_assert_eq!(found.token().expose_secret(), token.as_str());
    }

    #[test]
    fn no_cookie_but_the_configured_name_is_ever_used(
        others in proptest::collection::vec((other_cookie_name(), token()), 1..20),
    ) {
        let line = others.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
        let mut map = HeaderMap::new();
        map.append(http::header::COOKIE, HeaderValue::from_str(&line).unwrap());
        let extractor = Extractor::new([TokenSource::cookie("key")]);
        prop_assert_eq!(extractor.extract(&map, &Uri::from_static("/")), Ok(None));
    }

    #[test]
    fn origins_match_hosts_without_case_and_ports_exactly(
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        port in 1u16..65535,
        flips in proptest::collection::vec(any::<bool>(), 50),
        scheme in prop_oneof![Just("http"), Just("https")],
    ) {
        let shouted: String = host.chars().zip(flips.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c }).collect();
        let policy = OriginPolicy::same_host();
        let request_host = format!("{host}:{port}");
        let other_port = if port == 65534 { 1 } else { port + 1 };
        let (same, moved) = (format!("{scheme}://{shouted}:{port}"), format!("{scheme}://{shouted}:{other_port}"));
        let (lower, lower_moved) = (format!("{scheme}://{host}:{port}"), format!("{scheme}://{host}:{other_port}"));
        prop_assert!(policy.check(Some(&same), Some(&request_host)).is_ok());
        prop_assert!(policy.check(Some(&moved), Some(&request_host)).is_err());
        let allow = OriginPolicy::allowlist([same.clone()]).unwrap();
        prop_assert!(allow.check(Some(&lower), None).is_ok());
        prop_assert!(allow.check(Some(&lower_moved), None).is_err());
    }
}

//! The cost of `TokenAuthLayer` per request, against the same service bare.
//!
//! Run: `cargo bench --bench layer`. Each request carries the headers a real
//! handshake carries (a few cookies besides `key`), built the same way for
//! every variant, so the differences are the layer's own work.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use tower::{Layer, Service, ServiceExt, service_fn};
use ws_token_auth::extract::Extractor;
use ws_token_auth::{Authenticated, Authenticator, MemoryTokenStore, Token};

fn request(cookie: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/chat/stream/").body(()).expect("static request");
    let headers = req.headers_mut();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:8000"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
    headers.insert("sec-websocket-key", HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
    headers.insert("cookie", cookie.clone());
    req
}

fn cookie_for(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("csrftoken=Xk2fA9pQ; sessionid=0a1b2c3d4e; key={token}; theme=dark"))
        .expect("visible ASCII")
}

fn layer_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let store = Arc::new(MemoryTokenStore::new());
    for user in 0..10_000u64 {
        store.insert(&Token::generate(), Authenticated::new(user));
    }
    let token = Token::generate();
    store.insert(&token, Authenticated::new(42));
    let hit = cookie_for(token.expose_secret());
    let unknown = cookie_for(Token::generate().expose_secret());
    let malformed = HeaderValue::from_static("key=a; key=b");

    let bare = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let authed = Authenticator::from_shared(store).layer().layer(bare);

    let mut group = c.benchmark_group("layer");
    group.bench_function("bare_service", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = bare;
            let req = request(&hit);
            async move { black_box(svc.ready().await.expect("ready").call(req).await) }
        });
    });
    for (name, cookie) in [("cookie_hit", &hit), ("cookie_unknown_401", &unknown), ("cookie_malformed_400", &malformed)]
    {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = authed.clone();
                let req = request(cookie);
                async move { black_box(svc.ready().await.expect("ready").call(req).await) }
            });
        });
    }
    group.finish();

    let extractor = Extractor::default();
    let req = request(&hit);
    let (headers, uri): (&HeaderMap, &Uri) = (req.headers(), req.uri());
    c.bench_function("extract/cookie", |b| b.iter(|| black_box(extractor.extract(headers, uri))));
    // The part of extraction that is hashing: a 64-character token's SHA-256.
    let secret = token.expose_secret().to_owned();
    c.bench_function("token/new_with_digest", |b| b.iter(|| black_box(Token::new(black_box(secret.as_str())))));
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);

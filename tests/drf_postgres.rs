//! `examples/drf_postgres.rs` (included as it is) against the tables a Django
//! app with DRF token auth has, created in PostgreSQL with plain SQL as
//! Django's migrations would, in a schema of this test's own.

mod common;
#[allow(dead_code)]
#[path = "../examples/drf_postgres.rs"]
mod drf_postgres;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::{connect, next_text};
use drf_postgres::{DrfTokens, router};
use http::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use ws_token_auth::{Lifecycle, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_tokens_are_accepted_as_django_would() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let schema = format!("drf_{}", &Token::generate().expose_secret()[..10]);
    let options = PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.unwrap();
    let pool = PgPoolOptions::new().connect_with(options).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE auth_user (
            id serial PRIMARY KEY, password varchar(128) NOT NULL, last_login timestamptz NULL,
            is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE, first_name varchar(150) NOT NULL,
            last_name varchar(150) NOT NULL, email varchar(254) NOT NULL, is_staff boolean NOT NULL,
            is_active boolean NOT NULL, date_joined timestamptz NOT NULL);
         CREATE TABLE authtoken_token (
            key varchar(40) PRIMARY KEY, created timestamptz NOT NULL,
            user_id integer NOT NULL UNIQUE REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
         VALUES ('!', false, 'alice', '', '', '', false, true, now()),
                ('!', false, 'bob', '', '', '', true, false, now()),
                ('!', false, 'carol', '', '', '', false, true, now());
         INSERT INTO authtoken_token (key, created, user_id) VALUES
            ('9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b', now(), 1),
            ('0b8a5a5b0c9f3c5f7e5d1f1a2b3c4d5e6f708192', now(), 2),
            ('c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffe', now(), 3);",
    )
    .execute(&pool)
    .await
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Lifecycle::new(Arc::new(DrfTokens { pool: pool.clone() }));
    let app = router(lifecycle.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Active user: accepted, by cookie (the Android way) or Authorization header.
    let (status, socket) = connect(addr, &[("cookie", "key=9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b")]).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let mut alice = socket.unwrap();
    assert_eq!(next_text(&mut alice).await, "hello alice");
    let auth = [("authorization", "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b")];
    assert_eq!(connect(addr, &auth).await.0, StatusCode::SWITCHING_PROTOCOLS);
    // Inactive user: refused.
    assert_eq!(
        connect(addr, &[("cookie", "key=0b8a5a5b0c9f3c5f7e5d1f1a2b3c4d5e6f708192")]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Unknown key: refused.
    assert_eq!(
        connect(addr, &[("cookie", "key=ffffffffffffffffffffffffffffffffffffffff")]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Deleted token (what DRF does on logout, or an admin in Django's admin):
    // refused, and the socket it opened closes at the next revalidation, 4401.
    let carol = [("cookie", "key=c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffe")];
    let (status, carol_socket) = connect(addr, &carol).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let mut carol_socket = carol_socket.unwrap();
    assert_eq!(next_text(&mut carol_socket).await, "hello carol");
    sqlx::query("DELETE FROM authtoken_token WHERE user_id = 3").execute(&pool).await.unwrap();
    assert_eq!(connect(addr, &carol).await.0, StatusCode::UNAUTHORIZED);
    // Alice deactivated in Django's admin: her socket closes with 4403.
    sqlx::query("UPDATE auth_user SET is_active = false WHERE id = 1").execute(&pool).await.unwrap();
    assert_eq!(lifecycle.revalidate_once().await, 2);
    assert_eq!(testkit::close_code(&mut carol_socket, Duration::from_secs(5)).await, Some(4401));
    assert_eq!(testkit::close_code(&mut alice, Duration::from_secs(5)).await, Some(4403));

    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
}

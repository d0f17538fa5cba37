//! multichat: the showcase of ws-token-auth. A chat server that speaks the
//! protocol of the classic Django Channels "multichat" example (see
//! `../shared/PROTOCOL.md`), so its web and Android clients work unchanged,
//! with the handshake authenticated by `TokenAuthLayer` over `SqlTokenStore`.
//!
//! ```sh
//! cargo run --example multichat                      # serve on 127.0.0.1:8000, SQLite file multichat.db
//! cargo run --example multichat -- create-user alice --password secret
//! cargo run --example multichat -- seed-users --count 1000 > tokens.txt
//! cargo run --example multichat -- revoke --user alice
//! cargo run --example multichat -- serve --database-url postgres://postgres@127.0.0.1/test
//! ```
//!
//! stdout carries only what a command is for (the address, a token, `username
//! token` lines, a count); progress and errors go to stderr.

pub(crate) mod api;
pub(crate) mod chat;
pub(crate) mod db;
pub(crate) mod protocol;
pub(crate) mod relay;

use std::net::SocketAddr;
use std::process::ExitCode;

use ws_token_auth::live::CloseReason;
use ws_token_auth::live::redis::{Revocation, RevocationBus};
use ws_token_auth::{OriginPolicy, Token};

use self::db::{Db, Error, hash_password};

/// How long a client has to send a request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const USAGE: &str = "usage: multichat [--database-url URL] [COMMAND]
commands:
  serve [--bind 127.0.0.1:8000] [--allowed-origin URL]... [--redis-url URL] [--no-notices]
        [--secure-cookies] [--revalidate-secs 60]
  create-user NAME [--password PW] [--staff]
  seed-users --count N [--prefix user] [--password PW]
  revoke TOKEN [--redis-url URL] | revoke --user NAME [--redis-url URL]
--database-url (also DATABASE_URL) defaults to sqlite://multichat.db";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Serve {
        bind: SocketAddr,
        allowed_origins: Vec<String>,
        notices: bool,
        secure_cookies: bool,
        revalidate_secs: u64,
        redis_url: Option<String>,
        insecure_no_auth: bool,
    },
    CreateUser {
        name: String,
        password: Option<String>,
        staff: bool,
    },
    SeedUsers {
        count: usize,
        prefix: String,
        password: String,
    },
    Revoke {
        token: Option<String>,
        user: Option<String>,
        redis_url: Option<String>,
    },
}

/// Parses the arguments after the program name; `--database-url` may stand
/// anywhere. Returns the database URL (None: use the default) and the command.
pub(crate) fn parse(args: &[String]) -> Result<(Option<String>, Command), String> {
    let mut database_url = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--database-url" => database_url = Some(it.next().ok_or("--database-url needs a value")?.clone()),
            other => match other.strip_prefix("--database-url=") {
                Some(url) => database_url = Some(url.to_owned()),
                None => rest.push(arg.clone()),
            },
        }
    }
    let (name, options) = match rest.first().map(String::as_str) {
        None => ("serve", &rest[..]),
        Some(first) if first.starts_with("--") => ("serve", &rest[..]),
        Some(first) => (first, &rest[1..]),
    };
    let mut positional = Vec::new();
    let mut flags: Vec<(&str, Option<&str>)> = Vec::new();
    let mut it = options.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            flag @ ("--no-notices" | "--staff" | "--secure-cookies" | "--insecure-no-auth") => flags.push((flag, None)),
            flag if flag.starts_with("--") => {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                flags.push((flag, Some(value)));
            }
            value => positional.push(value.to_owned()),
        }
    }
    let take = |flag: &str| flags.iter().rev().find(|(f, _)| *f == flag).and_then(|(_, v)| v.map(str::to_owned));
    let has = |flag: &str| flags.iter().any(|(f, _)| *f == flag);
    let allowed = |known: &[&str]| match flags.iter().find(|(f, _)| !known.contains(f)) {
        Some((flag, _)) => Err(format!("{name}: unknown option {flag}")),
        None => Ok(()),
    };
    let command = match name {
        "serve" => {
            allowed(&[
                "--bind",
                "--allowed-origin",
                "--no-notices",
                "--secure-cookies",
                "--redis-url",
                "--revalidate-secs",
                "--insecure-no-auth",
            ])?;
            let bind = take("--bind").unwrap_or_else(|| "127.0.0.1:8000".into());
            Command::Serve {
                bind: bind.parse().map_err(|e| format!("--bind {bind}: {e}"))?,
                allowed_origins: flags
                    .iter()
                    .filter(|(f, _)| *f == "--allowed-origin")
                    .filter_map(|(_, v)| v.map(str::to_owned))
                    .collect(),
                notices: !has("--no-notices"),
                secure_cookies: has("--secure-cookies"),
                revalidate_secs: match take("--revalidate-secs") {
                    Some(secs) => secs
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or(format!("--revalidate-secs {secs}: a positive number"))?,
                    None => 60,
                },
                redis_url: take("--redis-url"),
                insecure_no_auth: has("--insecure-no-auth"),
            }
        }
        "create-user" => {
            allowed(&["--password", "--staff"])?;
            let [name] = &positional[..] else { return Err("create-user: give one NAME".into()) };
            Command::CreateUser { name: name.clone(), password: take("--password"), staff: has("--staff") }
        }
        "seed-users" => {
            allowed(&["--count", "--prefix", "--password"])?;
            let count = take("--count").ok_or("seed-users: --count N is required")?;
            Command::SeedUsers {
                count: count.parse().map_err(|_| format!("seed-users: --count {count}: not a number"))?,
                prefix: take("--prefix").unwrap_or_else(|| "user".into()),
                password: take("--password").unwrap_or_else(|| "password".into()),
            }
        }
        "revoke" => {
            allowed(&["--user", "--redis-url"])?;
            let (user, redis_url) = (take("--user"), take("--redis-url"));
            match (&positional[..], &user) {
                ([token], None) => Command::Revoke { token: Some(token.clone()), user: None, redis_url },
                ([], Some(_)) => Command::Revoke { token: None, user, redis_url },
                _ => return Err("revoke: give either TOKEN or --user NAME".into()),
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok((database_url, command))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (url, command) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("multichat: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let url = url.or_else(|| std::env::var("DATABASE_URL").ok()).unwrap_or_else(|| "sqlite://multichat.db".into());
    match run(&url, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("multichat: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Closes the revoked sockets on every `serve` process: at once through Redis,
/// else they notice at their next revalidation.
async fn tell_servers(redis_url: Option<&str>, database_url: &str, revocation: Revocation) -> Result<(), Error> {
    match redis_url {
        Some(redis_url) => {
            let (_, channel) = relay::channels(database_url);
            RevocationBus::connect(redis_url, channel).await?.publish(&revocation).await?;
            eprintln!("told the servers through Redis");
        }
        None => eprintln!("running servers close the sockets at their next revalidation (--redis-url: at once)"),
    }
    Ok(())
}

async fn run(url: &str, command: Command) -> Result<(), Error> {
    let db = Db::open(url).await?;
    match command {
        Command::Serve {
            bind,
            allowed_origins,
            notices,
            secure_cookies,
            revalidate_secs,
            redis_url,
            insecure_no_auth,
        } => {
            let mut origin = OriginPolicy::same_host();
            for allowed in &allowed_origins {
                origin = origin.allow(allowed)?;
            }
            if db.user_count().await? == 0 {
                eprintln!("no users yet: create one with `multichat create-user NAME --password PW`");
            }
            let app = match &redis_url {
                Some(redis_url) => api::App::with_redis(db, notices, secure_cookies, redis_url, url).await?,
                None => api::App::new(db, notices, secure_cookies).await?,
            };
            // Tokens revoked behind this process's back (another process, the
            // database itself) close their sockets within this interval.
            let store = std::sync::Arc::new(app.db.tokens.clone());
            app.revocations.revalidate(store, std::time::Duration::from_secs(revalidate_secs));
            let listener = tokio::net::TcpListener::bind(bind).await?;
            println!("http://{}", listener.local_addr()?);
            if insecure_no_auth {
                // For benchmarks only: the same chat without authentication.
                eprintln!("WARNING: --insecure-no-auth: anyone may connect as anyone (a benchmark baseline)");
                api::serve(listener, api::router_without_auth(app), HEADER_TIMEOUT).await;
                return Ok(());
            }
            eprintln!("serving the chat page at / and the WebSocket at /chat/stream/");
            api::serve(listener, api::router(app, origin), HEADER_TIMEOUT).await;
        }
        Command::CreateUser { name, password, staff } => {
            let password = password.unwrap_or_else(|| {
                let generated = Token::generate().expose_secret()[..20].to_owned();
                eprintln!("password for {name}: {generated}");
                generated
            });
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            let id = db.create_user(&name, &hash, staff).await?;
            let token = db.tokens.issue(id, None).await?;
            eprintln!("created user {name}{}", if staff { " (staff)" } else { "" });
            println!("{}", token.expose_secret());
        }
        Command::SeedUsers { count, prefix, password } => {
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            let names: Vec<String> = (1..=count).map(|i| format!("{prefix}{i}")).collect();
            let ids = db.ensure_users(&names, &hash).await?;
            let mut out = String::with_capacity(count * 80);
            for (name, id) in names.iter().zip(ids) {
                let token = db.tokens.issue(id, None).await?;
                out.push_str(name);
                out.push(' ');
                out.push_str(token.expose_secret());
                out.push('\n');
            }
            print!("{out}");
            eprintln!("seeded {count} users");
        }
        Command::Revoke { token: Some(token), redis_url, .. } => {
            let token = Token::new(token).map_err(|e| format!("not a token: {e}"))?;
            let revoked = db.tokens.revoke(&token).await?;
            tell_servers(redis_url.as_deref(), url, Revocation::Token(token.id())).await?;
            println!("{}", u8::from(revoked));
        }
        Command::Revoke { user: Some(name), redis_url, .. } => {
            let id = db.user_id(&name).await?.ok_or_else(|| format!("no user {name:?}"))?;
            let revoked = db.tokens.revoke_user(id).await?;
            let revocation = Revocation::User { key: id.to_string(), reason: CloseReason::Revoked };
            tell_servers(redis_url.as_deref(), url, revocation).await?;
            println!("{revoked}");
        }
        Command::Revoke { .. } => unreachable!("parse requires TOKEN or --user"),
    }
    Ok(())
}

//! multichat: the showcase of ws-token-auth. A chat server that speaks the
//! protocol of the classic Django Channels "multichat" example
//! (`docs/PROTOCOL.md`), so its web and Android clients work unchanged, with
//! the handshake authenticated by `TokenAuthLayer` over the crate's SQL stores, and
//! every token change made through one `Lifecycle`.
//!
//! ```sh
//! cargo run -p multichat                      # serve on 127.0.0.1:8000, SQLite file multichat.db
//! cargo run -p multichat -- create-user alice --password secret
//! cargo run -p multichat -- seed-users --count 1000 > tokens.txt
//! cargo run -p multichat -- revoke --user alice
//! cargo run -p multichat -- serve --database-url postgres://postgres@127.0.0.1/test
//! ```
//!
//! The binary is `src/main.rs`; this library holds the app, so that its tests
//! and benchmarks drive the same code.
//!
//! stdout carries only what a command is for (the address, a token, `username
//! token` lines, a count); progress and errors go to stderr.

pub mod api;
pub mod chat;
pub mod db;
pub mod limits;
pub mod logging;
pub mod outbox;
pub mod protocol;
pub mod relay;

use std::net::SocketAddr;
use std::process::ExitCode;

use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::live::{AccessEvent, Bus, BusError, Listener};
use ws_token_auth::{Lifecycle, OriginPolicy, Token};

use self::db::{ChatUser, Db, Error, Tokens, hash_password};
use self::limits::Limits;

const USAGE: &str = "usage: multichat [--database-url URL] [COMMAND]
commands:
  serve [--bind 127.0.0.1:8000] [--allowed-origin URL]... [--redis-url URL] [--no-notices]
        [--secure-cookies] [--revalidate-secs 60] [--header-timeout-secs 10] [--body-timeout-secs 10]
        [--max-connections 10000] [--max-concurrent-logins CORES] [--login-token-ttl-secs 1209600]
        [--expiry-warning-secs 60] [--ticket-ttl 30] [--max-head-bytes 32768]
        [--max-sockets-per-user 100] [--max-issues-per-minute 30] [--purge-every-secs 60]
        [--django [--django-session-cookie sessionid] [DJANGO TABLES]]   (DJANGO_SECRET_KEY in the environment)
  django-setup [DJANGO TABLES]   (over a Django app's PostgreSQL: the chat's tables, the change triggers)
  create-user NAME [--password PW] [--staff] [--token-ttl SECS]
  issue-token NAME [--ttl SECS]
  seed-users --count N [--prefix user] [--password PW]
  revoke TOKEN | revoke --token-stdin | revoke --user NAME   (each with [--redis-url URL])
  deactivate NAME [--redis-url URL] | activate NAME [--redis-url URL]
DJANGO TABLES, where a custom AUTH_USER_MODEL differs from Django's: --django-user-table auth_user
  --django-id-column id (an integer key) --django-username-column username --django-active-column is_active
  --django-staff-column is_staff --django-password-column password --django-token-table authtoken_token
  --django-session-table django_session
--database-url (also DATABASE_URL) defaults to sqlite://multichat.db";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve {
        bind: SocketAddr,
        allowed_origins: Vec<String>,
        notices: bool,
        secure_cookies: bool,
        revalidate_secs: u64,
        redis_url: Option<String>,
        insecure_no_auth: bool,
        limits: Limits,
        /// `--django`: beside a Django app, over its tables.
        django: Option<Box<Django>>,
    },
    /// `django-setup`: the app's own tables and the change triggers on
    /// Django's.
    DjangoSetup {
        tables: Box<ws_token_auth_django::DjangoTables>,
    },
    CreateUser {
        name: String,
        password: Option<String>,
        staff: bool,
        token_ttl: Option<u64>,
    },
    IssueToken {
        name: String,
        ttl: Option<u64>,
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
    /// `revoke --token-stdin`: the token is read from standard input, so that
    /// it never shows in a process list.
    RevokeFromStdin {
        redis_url: Option<String>,
    },
    /// `deactivate` (active: false) or `activate` (active: true).
    SetActive {
        name: String,
        active: bool,
        redis_url: Option<String>,
    },
}

/// Where Django keeps what `serve --django` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Django {
    pub tables: ws_token_auth_django::DjangoTables,
    /// Django's `SESSION_COOKIE_NAME` (default `sessionid`).
    pub session_cookie: String,
}

/// The options naming Django's tables and columns where they differ from
/// Django's defaults (a custom `AUTH_USER_MODEL`).
const DJANGO_TABLE_OPTIONS: [&str; 8] = [
    "--django-user-table",
    "--django-id-column",
    "--django-username-column",
    "--django-active-column",
    "--django-staff-column",
    "--django-password-column",
    "--django-token-table",
    "--django-session-table",
];

fn django_tables(take: &dyn Fn(&str) -> Option<String>) -> Result<ws_token_auth_django::DjangoTables, String> {
    use ws_token_auth_django::DjangoTables;
    type Set = fn(DjangoTables, &str) -> Result<DjangoTables, ws_token_auth_django::InvalidName>;
    let setters: [Set; 8] = [
        DjangoTables::users,
        DjangoTables::id_column,
        DjangoTables::username_column,
        DjangoTables::active_column,
        DjangoTables::staff_column,
        DjangoTables::password_column,
        DjangoTables::tokens,
        DjangoTables::sessions,
    ];
    let mut tables = DjangoTables::default();
    for (flag, set) in DJANGO_TABLE_OPTIONS.iter().zip(setters) {
        if let Some(name) = take(flag) {
            tables = set(tables, &name).map_err(|e| format!("{flag}: {e}"))?;
        }
    }
    Ok(tables)
}

/// Parses the arguments after the program name; `--database-url` may stand
/// anywhere. Returns the database URL (None: use the default) and the command.
pub fn parse(args: &[String]) -> Result<(Option<String>, Command), String> {
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
            flag @ ("--no-notices" | "--staff" | "--secure-cookies" | "--insecure-no-auth" | "--token-stdin"
            | "--django") => flags.push((flag, None)),
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
            let mut known = vec!["--django", "--django-session-cookie"];
            known.extend(DJANGO_TABLE_OPTIONS);
            if let Some((flag, _)) = flags.iter().find(|(f, _)| f.starts_with("--django") && *f != "--django") {
                if !has("--django") {
                    return Err(format!("serve: {flag} goes with --django"));
                }
            }
            known.extend([
                "--bind",
                "--allowed-origin",
                "--no-notices",
                "--secure-cookies",
                "--redis-url",
                "--revalidate-secs",
                "--insecure-no-auth",
                "--header-timeout-secs",
                "--body-timeout-secs",
                "--max-connections",
                "--max-concurrent-logins",
                "--login-token-ttl-secs",
                "--expiry-warning-secs",
                "--ticket-ttl",
                "--max-head-bytes",
                "--max-sockets-per-user",
                "--max-issues-per-minute",
                "--purge-every-secs",
            ]);
            allowed(&known)?;
            let defaults = Limits::default();
            let secs = |flag: &str, default: std::time::Duration| {
                seconds(flag, take(flag)).map(|s| s.map_or(default, std::time::Duration::from_secs))
            };
            let count = |flag: &str, default: usize| -> Result<usize, String> {
                take(flag).map_or(Ok(default), |n| {
                    n.parse().ok().filter(|n| *n > 0).ok_or(format!("{flag} {n}: a positive number"))
                })
            };
            let max_concurrent_logins = count("--max-concurrent-logins", defaults.max_concurrent_logins)?;
            let max_head_bytes = count("--max-head-bytes", defaults.max_head_bytes)?;
            if max_head_bytes < api::MIN_HEAD_BYTES {
                return Err(format!("--max-head-bytes {max_head_bytes}: at least {}", api::MIN_HEAD_BYTES));
            }
            let limits = Limits {
                header_timeout: secs("--header-timeout-secs", defaults.header_timeout)?,
                body_timeout: secs("--body-timeout-secs", defaults.body_timeout)?,
                max_connections: count("--max-connections", defaults.max_connections)?,
                max_concurrent_logins,
                login_queue: 2 * max_concurrent_logins,
                login_token_ttl: secs("--login-token-ttl-secs", defaults.login_token_ttl)?,
                expiry_warning: secs("--expiry-warning-secs", defaults.expiry_warning)?,
                ticket_ttl: secs("--ticket-ttl", defaults.ticket_ttl)?,
                max_head_bytes,
                max_sockets_per_user: count("--max-sockets-per-user", defaults.max_sockets_per_user)?,
                max_issues_per_minute: count("--max-issues-per-minute", defaults.max_issues_per_minute)?,
                purge_every: secs("--purge-every-secs", defaults.purge_every)?,
            };
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
                limits,
                django: match has("--django") {
                    true => Some(Box::new(Django {
                        tables: django_tables(&take)?,
                        session_cookie: take("--django-session-cookie").unwrap_or_else(|| "sessionid".into()),
                    })),
                    false => None,
                },
            }
        }
        "django-setup" => {
            allowed(&DJANGO_TABLE_OPTIONS)?;
            if !positional.is_empty() {
                return Err("django-setup takes no arguments".into());
            }
            Command::DjangoSetup { tables: Box::new(django_tables(&take)?) }
        }
        "create-user" => {
            allowed(&["--password", "--staff", "--token-ttl"])?;
            let [name] = &positional[..] else { return Err("create-user: give one NAME".into()) };
            let token_ttl = seconds("--token-ttl", take("--token-ttl"))?;
            Command::CreateUser { name: name.clone(), password: take("--password"), staff: has("--staff"), token_ttl }
        }
        "issue-token" => {
            allowed(&["--ttl"])?;
            let [name] = &positional[..] else { return Err("issue-token: give one NAME".into()) };
            Command::IssueToken { name: name.clone(), ttl: seconds("--ttl", take("--ttl"))? }
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
            allowed(&["--user", "--redis-url", "--token-stdin"])?;
            let (user, redis_url) = (take("--user"), take("--redis-url"));
            match (&positional[..], &user, has("--token-stdin")) {
                ([token], None, false) => Command::Revoke { token: Some(token.clone()), user: None, redis_url },
                ([], Some(_), false) => Command::Revoke { token: None, user, redis_url },
                ([], None, true) => Command::RevokeFromStdin { redis_url },
                _ => return Err("revoke: give one of TOKEN, --token-stdin or --user NAME".into()),
            }
        }
        "deactivate" | "activate" => {
            allowed(&["--redis-url"])?;
            let [user] = &positional[..] else { return Err(format!("{name}: give one NAME")) };
            Command::SetActive { name: user.clone(), active: name == "activate", redis_url: take("--redis-url") }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok((database_url, command))
}

/// A positive whole number of seconds, if given.
fn seconds(flag: &str, value: Option<String>) -> Result<Option<u64>, String> {
    value
        .map(|secs| secs.parse().ok().filter(|s| *s > 0).ok_or(format!("{flag} {secs}: a positive number of seconds")))
        .transpose()
}

/// Runs the command line `args` (without the program's name).
pub async fn main(args: Vec<String>) -> ExitCode {
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

/// The lifecycle a management command acts through: the change is made in
/// the database (the source of truth) and, with `--redis-url`, told to the
/// running servers at once (a Redis that does not take it is a logged
/// warning: they act on it at their next revalidation).
fn manage(db: &Db, redis_url: Option<&str>, database_url: &str) -> Result<Lifecycle<Tokens>, Error> {
    let lifecycle = db.lifecycle();
    Ok(match redis_url {
        Some(url) => lifecycle.with_bus(Tell(RevocationBus::new(url, relay::channels(database_url).1)?)),
        None => {
            eprintln!("running servers act on this at their next revalidation (--redis-url: at once)");
            lifecycle
        }
    })
}

/// A one-off command's bus: it tells the running servers and listens to
/// nothing; a Redis that does not take the change is said on stderr, as a
/// warning (the change is made in the database whatever Redis does).
#[derive(Debug)]
struct Tell(RevocationBus);

#[async_trait::async_trait]
impl Bus for Tell {
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
        let told = self.0.publish(event).await;
        if let Err(error) = &told {
            eprintln!(
                "warning: done in the database, but Redis could not be told ({error}): running servers act on this \
                 within their --revalidate-secs"
            );
        }
        told
    }

    fn listen(&self, _listener: Listener) {}
}

/// Django's `SECRET_KEY` (and `SECRET_KEY_FALLBACKS`) from the environment,
/// never from the command line.
fn django_keys() -> Result<ws_token_auth_django::signing::SecretKeys, Error> {
    let key = std::env::var("DJANGO_SECRET_KEY").map_err(|_| {
        "serve --django needs DJANGO_SECRET_KEY (the Django app's SECRET_KEY, in the environment, never on the \
         command line) to verify Django's sessions"
    })?;
    let fallbacks = std::env::var("DJANGO_SECRET_KEY_FALLBACKS").unwrap_or_default();
    let keys = ws_token_auth_django::signing::SecretKeys::new(key)
        .and_then(|keys| keys.with_fallbacks(fallbacks.split(',').map(str::trim).filter(|k| !k.is_empty())))
        .map_err(|e| format!("DJANGO_SECRET_KEY: {e}"))?;
    Ok(keys)
}

async fn run(url: &str, command: Command) -> Result<(), Error> {
    let db = match &command {
        Command::Serve { django: Some(django), .. } => {
            let keys = django_keys()?;
            Db::open_django(url, django.tables.clone(), keys).await?
        }
        _ => Db::open(url).await?,
    };
    match command {
        Command::DjangoSetup { tables } => {
            let db::Pool::Postgres(pool) = &db.pool else {
                return Err("django-setup needs the Django app's PostgreSQL database (postgres://...)".into());
            };
            println!("the chat's own tables (chat_*, ws_auth_tokens*) are there");
            ws_token_auth_django::install_triggers(pool, &tables, ws_token_auth_django::CHANNEL)
                .await
                .map_err(|e| format!("cannot install the triggers on Django's tables ({tables}): {e}"))?;
            println!(
                "triggers installed on {tables}: Django's logouts, deactivations and password changes reach every \
                 `serve --django` at once"
            );
        }
        Command::Serve {
            bind,
            allowed_origins,
            notices,
            secure_cookies,
            revalidate_secs,
            redis_url,
            insecure_no_auth,
            limits,
            django,
        } => {
            let mut origin = OriginPolicy::same_host();
            for allowed in &allowed_origins {
                origin = origin.allow(allowed)?;
            }
            if django.is_none() && db.user_count().await? == 0 {
                tracing::warn!("no users yet: create one with `multichat create-user NAME --password PW`");
            }
            let app = match (&redis_url, django) {
                (_, Some(django)) => {
                    let cookie = django.session_cookie;
                    api::App::beside_django(db, notices, secure_cookies, redis_url.as_deref(), url, cookie).await?
                }
                (Some(redis_url), None) => api::App::with_redis(db, notices, secure_cookies, redis_url, url).await?,
                (None, None) => api::App::new(db, notices, secure_cookies).await?,
            };
            let app = app.with_limits(limits.clone());
            // Tokens revoked behind this process's back (another process, the
            // database itself) close their sockets, and are refused by the
            // cache, within this interval.
            app.lifecycle.revalidate_every(std::time::Duration::from_secs(revalidate_secs));
            // Expired tokens and tickets leave the database (a ticket's row
            // never outlives its expiry by more than this).
            app.lifecycle.purge_every(limits.purge_every);
            let listener = tokio::net::TcpListener::bind(bind).await?;
            let addr = listener.local_addr()?;
            println!("http://{addr}");
            if insecure_no_auth {
                // For benchmarks only: the same chat without authentication.
                tracing::warn!("--insecure-no-auth: anyone may connect as anyone (a benchmark baseline)");
                api::serve(listener, api::router_without_auth(app), &limits).await;
                return Ok(());
            }
            tracing::info!(%addr, "serving the chat page at / and the WebSocket at /chat/stream/");
            api::serve(listener, api::router(app, origin), &limits).await;
        }
        Command::CreateUser { name, password, staff, token_ttl } => {
            let password = password.unwrap_or_else(|| {
                let generated = Token::generate().expose_secret()[..20].to_owned();
                eprintln!("password for {name}: {generated}");
                generated
            });
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            let id = db.create_user(&name, &hash, staff).await?;
            let user = ChatUser { id, username: name.clone(), is_staff: staff };
            let ttl = token_ttl.map(std::time::Duration::from_secs);
            let token = db.lifecycle().issue(&user, ttl).await?;
            eprintln!("created user {name}{}", if staff { " (staff)" } else { "" });
            println!("{}", token.expose_secret());
        }
        Command::IssueToken { name, ttl } => {
            let login = db.login(&name).await?.ok_or_else(|| format!("no user {name:?}"))?;
            if !login.is_active {
                return Err(format!("{name} is deactivated: `multichat activate {name}` first").into());
            }
            let id = login.user().id;
            let token = db.issue_token(id, ttl.map(std::time::Duration::from_secs)).await?;
            eprintln!("issued a token for {name}");
            println!("{}", token.expose_secret());
        }
        Command::SeedUsers { count, prefix, password } => {
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            let names: Vec<String> = (1..=count).map(|i| format!("{prefix}{i}")).collect();
            let users = db.ensure_users(&names, &hash).await?;
            let mut out = String::with_capacity(count * 80);
            let lifecycle = db.lifecycle();
            for (name, user) in names.iter().zip(users) {
                let token = lifecycle.issue(&user, None).await?;
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
            let revoked = manage(&db, redis_url.as_deref(), url)?.revoke(&token).await?;
            println!("{}", u8::from(revoked));
        }
        Command::RevokeFromStdin { redis_url } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let token = Token::new(line.trim()).map_err(|e| format!("standard input holds no token: {e}"))?;
            let revoked = manage(&db, redis_url.as_deref(), url)?.revoke(&token).await?;
            println!("{}", u8::from(revoked));
        }
        Command::Revoke { user: Some(name), redis_url, .. } => {
            let id = db.user_id(&name).await?.ok_or_else(|| format!("no user {name:?}"))?;
            let revoked = manage(&db, redis_url.as_deref(), url)?.revoke_user(&id).await?;
            println!("{revoked}");
        }
        Command::SetActive { name, active, redis_url } => {
            let id = db.user_id(&name).await?.ok_or_else(|| format!("no user {name:?}"))?;
            let lifecycle = manage(&db, redis_url.as_deref(), url)?;
            if active {
                lifecycle.let_in(&id).await?;
                eprintln!("activated {name}");
            } else {
                lifecycle.lock_out(&id).await?;
                eprintln!("deactivated {name}: its sockets close with 4403");
            }
        }
        Command::Revoke { .. } => unreachable!("parse requires TOKEN or --user"),
    }
    Ok(())
}

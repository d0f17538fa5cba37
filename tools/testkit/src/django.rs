//! A real Django app (`django/tests/django_app/djangoctl.py`: Django 5.2 and
//! DRF, pinned, installed into its `.deps` by `.ci/run`) over a PostgreSQL
//! database of its own, migrated by Django itself.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Django app over a fresh database on the server of `DATABASE_URL`.
/// [`drop_database`](Self::drop_database) at the end of the test (a test
/// that fails midway leaves its `wsdj_*` database behind).
#[derive(Debug)]
pub struct Django {
    url: String,
    database: String,
    secret_key: String,
    user_model: Option<String>,
    admin: sqlx::PgPool,
}

impl Django {
    /// Makes the database (its name starts with `prefix`) and runs Django's
    /// own migrations in it, with Django's `auth.User`.
    pub async fn new(prefix: &str, secret_key: &str) -> Self {
        Self::build(prefix, secret_key, None).await
    }

    /// The same with a custom `AUTH_USER_MODEL`, e.g. `accounts.Member`
    /// (table `accounts_member`, a UUID primary key).
    pub async fn with_user_model(prefix: &str, secret_key: &str, model: &str) -> Self {
        Self::build(prefix, secret_key, Some(model.to_owned())).await
    }

    async fn build(prefix: &str, secret_key: &str, user_model: Option<String>) -> Self {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL: these tests need a PostgreSQL");
        let admin = sqlx::PgPool::connect(&base).await.expect("PostgreSQL at DATABASE_URL");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let database = format!("wsdj_{prefix}_{}_{nanos}_{}", std::process::id(), MADE.fetch_add(1, Ordering::Relaxed));
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&admin).await.unwrap();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => panic!("DATABASE_URL names no database: {base}"),
        };
        let django = Self { url, database, secret_key: secret_key.to_owned(), user_model, admin };
        django.run(&["migrate"]);
        django
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `djangoctl.py` with `args` (see its docstring); its stdout,
    /// trimmed. Panics with Django's stderr when the command fails.
    pub fn run(&self, args: &[&str]) -> String {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../django/tests/django_app");
        assert!(
            dir.join(".deps/django").is_dir(),
            "Django is not installed for the tests: python3 -m pip install --target {0}/.deps -r {0}/requirements.txt \
             (.ci/run does)",
            dir.display()
        );
        let mut command = Command::new("python3");
        command
            .arg(dir.join("djangoctl.py"))
            .args(args)
            .env("DJANGO_DATABASE_URL", &self.url)
            .env("DJANGO_SECRET_KEY", &self.secret_key);
        if let Some(model) = &self.user_model {
            command.env("DJANGO_USER_MODEL", model);
        }
        let out = command.output().expect("python3");
        assert!(out.status.success(), "djangoctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Drops the database (closing whatever is still connected to it).
    pub async fn drop_database(self) {
        let _ = sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.database)).execute(&self.admin).await;
    }
}

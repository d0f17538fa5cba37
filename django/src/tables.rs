//! Where Django keeps users, tokens and sessions: Django's default table and
//! column names, each one changeable for a custom `AUTH_USER_MODEL`.

use std::fmt;

/// Django's tables as this crate reads them. The defaults are Django's own
/// (`auth_user`, `authtoken_token`, `django_session`); a custom user model
/// names its table and, where they differ, its columns.
///
/// ```
/// use ws_token_auth_django::DjangoTables;
///
/// let tables = DjangoTables::default()
///     .users("accounts_user")?
///     .username_column("email")?;
/// assert_eq!(tables.users_table(), "accounts_user");
/// assert!(DjangoTables::default().users("auth_user; DROP TABLE x").is_err());
/// # Ok::<(), ws_token_auth_django::InvalidName>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoTables {
    pub(crate) users: String,
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) is_active: String,
    pub(crate) is_staff: String,
    pub(crate) password: String,
    pub(crate) tokens: String,
    pub(crate) sessions: String,
}

impl Default for DjangoTables {
    fn default() -> Self {
        Self {
            users: "auth_user".into(),
            id: "id".into(),
            username: "username".into(),
            is_active: "is_active".into(),
            is_staff: "is_staff".into(),
            password: "password".into(),
            tokens: "authtoken_token".into(),
            sessions: "django_session".into(),
        }
    }
}

/// A table or column name that is not a plain SQL identifier (letters,
/// digits and `_`, not starting with a digit; a table may be
/// `schema.table`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a plain SQL identifier")]
pub struct InvalidName(String);

fn identifier(name: &str, qualified: bool) -> Result<String, InvalidName> {
    let plain = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && part.len() <= 63
    };
    let ok = match name.split_once('.') {
        Some((schema, table)) if qualified => plain(schema) && plain(table),
        Some(_) => false,
        None => plain(name),
    };
    if ok { Ok(name.to_owned()) } else { Err(InvalidName(name.to_owned())) }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident, $qualified:expr;)*) => {
        impl DjangoTables {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// [`InvalidName`] if `name` is not a plain SQL identifier.
                pub fn $name(mut self, name: &str) -> Result<Self, InvalidName> {
                    self.$field = identifier(name, $qualified)?;
                    Ok(self)
                }
            )*
        }
    };
}

setters! {
    /// The users table (`AUTH_USER_MODEL`'s; default `auth_user`).
    users => users, true;
    /// The users table's primary key column (default `id`; of any type:
    /// Django's integer, a `UUIDField`, text).
    id_column => id, false;
    /// The column shown as the user's name (default `username`).
    username_column => username, false;
    /// The activity column (default `is_active`).
    active_column => is_active, false;
    /// The staff column (default `is_staff`).
    staff_column => is_staff, false;
    /// The password hash column (default `password`).
    password_column => password, false;
    /// DRF's token table (default `authtoken_token`).
    tokens => tokens, true;
    /// The database session backend's table (default `django_session`).
    sessions => sessions, true;
}

impl DjangoTables {
    /// The users table's name.
    ///
    /// ```
    /// assert_eq!(ws_token_auth_django::DjangoTables::default().users_table(), "auth_user");
    /// ```
    #[must_use]
    pub fn users_table(&self) -> &str {
        &self.users
    }

    /// The token table's name.
    ///
    /// ```
    /// assert_eq!(ws_token_auth_django::DjangoTables::default().tokens_table(), "authtoken_token");
    /// ```
    #[must_use]
    pub fn tokens_table(&self) -> &str {
        &self.tokens
    }

    /// The session table's name.
    ///
    /// ```
    /// assert_eq!(ws_token_auth_django::DjangoTables::default().sessions_table(), "django_session");
    /// ```
    #[must_use]
    pub fn sessions_table(&self) -> &str {
        &self.sessions
    }

    /// `SELECT` of a user's columns, in this order: id, username, is_staff,
    /// is_active, password.
    pub(crate) fn user_columns(&self, alias: &str) -> String {
        let Self { id, username, is_staff, is_active, password, .. } = self;
        // An id as Django writes it in a session: the key's text.
        format!("{alias}.{id}::text, {alias}.{username}, {alias}.{is_staff}, {alias}.{is_active}, {alias}.{password}")
    }
}

impl fmt::Display for DjangoTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}, {}", self.users, self.tokens, self.sessions)
    }
}

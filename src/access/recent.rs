//! [`Recent`]: what changed lately, by token and by user, each with when it
//! was learned; forgotten, oldest first, once older than a window. The
//! registry remembers revocations with it (for sockets that register late),
//! the cache the changes that make an older answer untrustworthy.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::token::TokenId;

/// Changes learned lately, each with a value (the registry keeps the close
/// reason; the cache, nothing).
#[derive(Debug)]
pub(crate) struct Recent<V> {
    tokens: HashMap<TokenId, (Instant, V)>,
    users: HashMap<String, (Instant, V)>,
    /// In the order they were learned, to forget them in that order.
    order: VecDeque<(Instant, Key)>,
}

#[derive(Debug)]
enum Key {
    Token(TokenId),
    User(String),
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self { tokens: HashMap::new(), users: HashMap::new(), order: VecDeque::new() }
    }
}

impl<V> Recent<V> {
    /// Learns a change of token `id` now; forgets what is older than `keep`.
    pub(crate) fn token(&mut self, id: TokenId, value: V, keep: Duration) {
        let now = self.forget_old(keep);
        self.tokens.insert(id, (now, value));
        self.order.push_back((now, Key::Token(id)));
    }

    /// Learns a change of `user` now; forgets what is older than `keep`.
    pub(crate) fn user(&mut self, user: &str, value: V, keep: Duration) {
        let now = self.forget_old(keep);
        self.users.insert(user.to_owned(), (now, value));
        self.order.push_back((now, Key::User(user.to_owned())));
    }

    /// When token `id` last changed, and how.
    pub(crate) fn of_token(&self, id: &TokenId) -> Option<(Instant, &V)> {
        self.tokens.get(id).map(|(at, value)| (*at, value))
    }

    /// When `user` last changed, and how.
    pub(crate) fn of_user(&self, user: &str) -> Option<(Instant, &V)> {
        self.users.get(user).map(|(at, value)| (*at, value))
    }

    /// Whether no user change is remembered (a cheap test before formatting a user's id).
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn no_user(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether nothing is remembered.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.users.is_empty()
    }

    /// How many changes are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len() + self.users.len()
    }

    /// Forgets the changes older than `keep`; returns now.
    pub(crate) fn forget_old(&mut self, keep: Duration) -> Instant {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= keep {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else { break };
            // Only if it was not learned again since.
            match key {
                Key::Token(id) if self.tokens.get(&id).is_some_and(|(t, _)| *t == at) => {
                    self.tokens.remove(&id);
                }
                Key::User(user) if self.users.get(&user).is_some_and(|(t, _)| *t == at) => {
                    self.users.remove(&user);
                }
                _ => {}
            }
        }
        now
    }
}

//! Realistic message text for tests and load runs.

/// A stretch of a service's log of at least `bytes` bytes (empty for 0),
/// numbers varying with `seed`: what a paste into a chat looks like, and
/// compresses like.
pub fn log_paste(seed: usize, bytes: usize) -> String {
    let mut text = String::new();
    let mut i = seed;
    while text.len() < bytes {
        text += &format!(
            "2026-12-05 11:{:02}:{:02} INFO worker-{}: order {} shipped to warehouse {}, {} items, total {}.{:02} EUR\n",
            i % 60,
            (i * 7) % 60,
            i % 4,
            10_000 + i * 37,
            i % 3,
            1 + i % 5,
            i * 13 % 400,
            i * 29 % 100
        );
        i += 1;
    }
    text
}

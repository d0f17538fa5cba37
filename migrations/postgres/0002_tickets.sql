-- ws-token-auth: the connect tickets of SqlTokenStore (PostgreSQL). `{tickets}`
-- is the token table's name followed by `_tickets`. Tickets are never stored:
-- `digest` is SHA-256 of the ticket; `record` holds the issuing token sealed
-- with a key that only the ticket yields. A ticket is used by deleting its row.
CREATE TABLE IF NOT EXISTS {tickets} (
    digest       BYTEA  NOT NULL PRIMARY KEY,
    record       BYTEA  NOT NULL,
    expires_at   BIGINT NOT NULL  -- unix milliseconds
);

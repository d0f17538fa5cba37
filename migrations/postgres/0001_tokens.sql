-- ws-token-auth: the token table of SqlTokenStore (PostgreSQL). `{tokens}` is
-- the table name, set with SqlTokenStore::with_table_name (default ws_auth_tokens).
-- Tokens are never stored: `digest` is SHA-256 of the token, `token_id` the
-- first 8 bytes of that digest in hex (the public TokenId), used for lookup.
CREATE TABLE IF NOT EXISTS {tokens} (
    token_id     TEXT   NOT NULL,
    digest       BYTEA  NOT NULL,
    user_id      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL, -- unix milliseconds
    expires_at   BIGINT,          -- unix milliseconds; NULL: never
    PRIMARY KEY (token_id, digest)
);
CREATE INDEX IF NOT EXISTS {tokens}_user_id ON {tokens} (user_id);

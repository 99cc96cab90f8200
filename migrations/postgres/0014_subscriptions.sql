-- Topic-based subscriptions (Subscriptions R5 Backport IG 1.1.0).
--
-- The outbox: every write of a resource a topic may watch adds a row here in the same
-- transaction as the version itself, so a committed write is never missed, also across a crash.
-- The subscription worker reads the rows in order, matches them against the topics and the
-- active subscriptions, records the notifications in `subscription_event` and deletes the rows,
-- all in one transaction.
CREATE TABLE subscription_outbox (
    seq      BIGSERIAL PRIMARY KEY,
    rtype    TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    version  BIGINT  NOT NULL,
    method   TEXT    NOT NULL,
    source   TEXT,                              -- the writer's meta.source (client URI), if any
    at       BIGINT  NOT NULL                   -- ms since the Unix epoch, UTC
);

-- Each subscription's events, numbered from 1 (eventsSinceSubscriptionStart), kept for
-- `$events` replay.
CREATE TABLE subscription_event (
    subscription TEXT    NOT NULL,
    number       BIGINT  NOT NULL,
    focus_type   TEXT    NOT NULL,
    focus_id     TEXT    NOT NULL,
    focus_version BIGINT  NOT NULL,
    method       TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    PRIMARY KEY (subscription, number)
);

-- Per subscription: who created it (whose access decides what it is told), how many events it
-- has had, how far delivery got, and the retry state of its channel.
CREATE TABLE subscription_state (
    subscription    TEXT    PRIMARY KEY,
    owner           TEXT,                       -- the creating client's URI; NULL: anonymous
    events          BIGINT  NOT NULL DEFAULT 0, -- eventsSinceSubscriptionStart
    delivered       BIGINT  NOT NULL DEFAULT 0, -- the highest event number delivered
    attempts        BIGINT  NOT NULL DEFAULT 0, -- failed deliveries in a row
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT
);

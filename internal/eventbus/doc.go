// Package eventbus owns live delivery of member events on one process: it
// hands each member's member_events rows to that member's subscribers on
// this process (the GraphQL websocket subscriptions), in seq order, with no
// gap and no duplicate, and it learns of events committed by any replica.
//
// # Delivery
//
// The database is the only source of events; the bus never carries an
// event in a message. A subscription remembers the last seq it handed over
// and every read is "seq > last ORDER BY seq" for its member. Because a
// member's seq is drawn from accounts.event_seq under that member's row
// lock, the transaction that wrote seq n committed before the one that
// wrote seq n+1 could take the lock, so any snapshot that shows n+1 also
// shows n: a read by cursor never skips a committed event. A seq that is
// not last+1 can only mean that Prune deleted rows under the reader; the
// subscription then ends with ErrEventsExpired rather than skip them.
//
// Everything else only decides when to read. Reads are done by one shared
// fetcher goroutine that gathers the subscriptions woken within a few
// milliseconds and reads them all with one query (a LATERAL join over
// unnest'ed (member, cursor, limit) arrays), so a subscription costs a
// small channel and no goroutine. Wakes come from:
//
//   - Wake, called by this process after a commit that wrote events;
//   - NOTIFY: Wake also queues the member ids for a coalesced
//     pg_notify(channel, "id,id,...") (or "*" for everyone) sent at most
//     once per Options.NotifyEvery on the notifier's own connection; the
//     listener of every replica wakes its local subscribers of those ids.
//     A listener reconnect (a window in which notifications were lost), a
//     failed ping or the first successful LISTEN wakes every local
//     subscriber;
//   - the safety tailer, for commits whose writer died before Wake and
//     for lost notifications (below).
//
// A wake that arrives while a read is in flight schedules another read, and
// a subscription is registered before its first read, so every event
// committed after Subscribe is seen by some read after its commit.
//
// # Safety tailer
//
// Every Options.PollEvery the tailer reads the horizon
// h = pg_snapshot_xmin(pg_current_snapshot()): every transaction id below
// h has ended (committed or rolled back), while transactions at or above it
// may still be running. It then reads the members of rows with
// lo <= tx_id < h (member_events.tx_id defaults to the writing transaction's
// pg_current_xact_id()), wakes the local subscribers of those members that
// have not yet got that far, and sets lo = h. A transaction that is still
// open when the horizon is read has an id >= h, so its rows fall in a later
// window however late it commits: the tailer never skips a row, even when
// transactions commit out of id order. The price is that a long-running
// transaction anywhere in the cluster holds the horizon back, delaying
// (never losing) what only the tailer would deliver; Wake and NOTIFY do not
// wait for it. lo starts at the first horizon read by Run: anything
// committed earlier is covered by the subscribers' own replay from their
// cursor. Rows written with a NULL tx_id are invisible to the tailer.
//
// # Flow control
//
// Each subscription has a logical buffer of Options.Buffer events: a small
// channel plus an overflow slice that exists only while it holds events.
// Replay (a subscription that has not yet caught up with the stored
// events) is flow controlled: the fetcher reads no more rows than the
// buffer has room for and reads again when the consumer has drained half of
// it, so a client may resume from any stored cursor. Once caught up, the
// subscription is live: an event that does not fit in the buffer ends it
// with ErrSlowConsumer, so that a stuck client never holds up the fetcher or
// anyone else; the client resumes by cursor.
//
// # Retention
//
// Prune deletes events whose occurred_at is older than Options.Retention,
// and with them any event of the same member with a lower seq, so that what
// remains of a member's events is always a suffix of its sequence. A cursor
// is valid when every event after it is still stored; see Subscribe.
package eventbus

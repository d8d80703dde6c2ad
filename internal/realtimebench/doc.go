// Package realtimebench is benchmark support for the real-time member
// events (memberEvents over graphql-transport-ws, internal/eventbus): the
// pieces scripts/bench-realtime.sh runs through cmd/rtbench, each in its own
// process so that the server under test is measured alone.
//
//   - Hold opens many websocket connections, each authenticated as a
//     member in connection_init and subscribed to MemberEvents, and keeps
//     them reading (answering pings) until closed.
//   - RefHandler is the reference those connections are compared with: a
//     bare gorilla/websocket server (1 KiB buffers, one reader goroutine per
//     connection) that answers connection_init and ignores subscriptions.
//   - Generate writes member events straight into PostgreSQL in the shape
//     the services write them (the member's account row locked and its
//     event_seq advanced, a member_events row, one transaction), optionally
//     waking an eventbus.Bus after each commit so that its coalesced NOTIFY
//     reaches the server under test the way another replica's would.
//   - Deliver combines the two to measure commit-to-receive latency.
//   - Ingest is an ingestOrder load generator (IngestOrder of
//     shared/clients/pos/checkout.graphql).
//
// Nothing here is used by the server.
package realtimebench

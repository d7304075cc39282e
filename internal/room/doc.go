// Package room is the room engine and the only writer of room data: it
// builds, authorises, signs and appends events (with gomatrixserverlib for
// every format and auth rule), keeps current state and state snapshots, the
// timeline order, memberships, receipts and typing. It never speaks HTTP;
// handlers call it with Matrix IDs and get Matrix errors back.
//
// Its files are named by whom the code serves: the prefix says the
// direction (local users, other servers, the stream's followers), the
// rest of the name what the file is about:
//
//   - engine.go: the Engine, its constructor and the room record (Info);
//     open.go: the store, notifier and engine opened together.
//   - store_*.go: how the engine lays its records out in the store (the
//     event record, the binary record format, the parsed-PDU cache, the
//     rooms' heads kept in memory for /sync).
//   - state_*.go: room state and what derives from it: how current state
//     and snapshots are stored (state_store.go), a state set as ingest and
//     resolution compute it (state_set.go), state resolution, power levels,
//     server ACLs, restricted join rules.
//   - perform_*.go: what local users do: send (with the per-room
//     sequencer), create, change membership, redact, aliases and the
//     directory, typing and receipts, upgrades.
//   - read_*.go and read.go: what local users read: events, state,
//     /messages, /context and relations, member lists and the membership
//     index (read_members.go, beside perform_membership.go that changes
//     memberships), receipts, space summaries, who may see what
//     (read_visibility.go), erased senders.
//   - sync.go, sync_*.go: the /sync rooms section (invites and leaves,
//     the state section, whether a commit concerns a waiting /sync);
//     sliding*.go: Simplified Sliding Sync's room list and room results.
//   - ingest.go, ingest_*.go: events other servers send: PDUs, joins
//     made through another server, backfill, invites across servers.
//   - serve.go, serve_*.go: what other servers ask: events, state, auth
//     chains, make_join templates, which servers share rooms and what a
//     server may see.
//   - follow_*.go: what the stream's followers read: the federation
//     queue (follow_outbound.go), push, application services, the search
//     index.
package room

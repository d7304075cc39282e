// Package secrets keeps Hearth's secrets: the server's signing key (its
// identity to other servers, Server-Server API §"Server keys"), the
// federation listener's self-signed certificate that LAN peers trust
// through that key, and the other per-install secrets the daemon stores
// by name (the control API credential, the TURN secret, appservices'
// hs_tokens).
//
// Invariants:
//   - A secret lives in exactly one place: the OS keyring (through
//     go-keyring; the entry's service is "Hearth", its account the data
//     dir's absolute path, "#" and the secret's name, so two Hearths on one
//     machine never share one) or a 0600 file named after the secret in the
//     data dir (created 0700 if absent), written to a temporary file and
//     renamed, so a crash never leaves half a key.
//   - key_store = auto keeps secrets where the signing key already is, so
//     keys never move silently; a new install uses the keyring if one
//     answers, else the file, with a warning. key_store = keyring refuses
//     to start without one; file never asks the keyring.
//   - Only Migrate moves secrets ('hearth keys migrate'): the signing key
//     (which must exist), the federation certificate and the names the
//     caller adds, each read back from the destination before any is
//     removed from the source.
//   - The signing key is stored in the form Synapse and Dendrite read
//     (signingkey.go); a retired key keeps only its public half. A stored
//     key or certificate that does not parse is an error, never a reason
//     to make a new one: peers would take the new one for an impostor.
package secrets

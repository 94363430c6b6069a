// Package auth owns how clients prove who they are to a node, and what each
// may then do: the users file, password hashes, API tokens, roles, and the
// client-facing TLS setup. Both front ends (internal/api/httpapi and
// internal/api/resp) use it; peers authenticate with internal/pki instead.
//
// It promises: no secret is ever logged or stored in the clear (the users
// file holds bcrypt hashes of passwords and SHA-256 digests of tokens);
// whether a user exists is told neither by an error nor by the time a
// check takes; checking a token or the default password costs one SHA-256,
// so HTTP requests can carry one each; checking a password costs one bcrypt
// comparison, and at most Config.MaxConcurrentHashes run at once. Without
// any credentials configured, Enabled is false and the front ends serve
// every client, as before auth existed.
//
// # Users file
//
// A text file (trireme node --users FILE), one record per line, fields
// separated by spaces; blank lines and lines starting with '#' are skipped:
//
//	# user NAME ROLE HASH     HASH: bcrypt ($2a$/$2b$/$2y$), or - for none
//	user alice admin $2a$11$Q6cV1Y0C0dCk2m9cF4q7ZOK2j3...
//	user grafana read -
//	# token NAME SHA256-HEX [LABEL]   an API token of user NAME
//	token grafana 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 dashboards
//
// A NAME is 1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit,
// and is defined once; a ROLE is read, write or admin; a token line names a
// user of the file (before or after it) and gets that user's role; LABEL
// (a NAME) names the token in logs. A user named "default" is the one a
// password alone authenticates (Redis's one-argument AUTH). Errors name
// the file and the line. The format is part of the package's contract.
//
// Nobody writes hashes by hand: `trireme users add NAME --role ROLE --file
// FILE` reads a password and appends the user line, and `trireme users
// token NAME --file FILE` prints a new token once and appends its digest.
//
// # Tokens
//
// An API token is TokenPrefix ("trireme_") followed by 32 random bytes in
// base64url (43 characters). The file keeps its SHA-256 only.
//
// # Roles
//
// read < write < admin; each allows what the lower ones do. Front ends
// classify each request as an Action and ask Role.Allows:
//
//	ActionRead    HTTP GET/HEAD /v1/kv/..., /v1/status, /v1/rollbacks, /metrics;
//	              RESP GET MGET EXISTS TTL STRLEN DBSIZE INFO ROLE CONFIG GET
//	              TRIREME.GETCTX, and the connection's own commands (ECHO
//	              CLIENT SELECT COMMAND READONLY READWRITE TRIREME.CONSISTENCY
//	              TRIREME.SESSION TRIREME.R): any authenticated user
//	ActionWrite   HTTP PUT/POST/DELETE /v1/kv/...; RESP SET SETNX GETSET
//	              GETDEL MSET INCR INCRBY DECR DECRBY APPEND DEL WAIT WAITAOF
//	              TRIREME.SETCTX TRIREME.ACK / CLIENT ACK TRIREME.W
//	ActionAdmin   HTTP POST /v1/leader/transfer (and membership changes, later)
//
// When credentials are configured, a RESP client that has not
// authenticated may send only AUTH, HELLO, PING and QUIT (everything else
// is refused with NOAUTH); an HTTP request carries its credential on every
// request.
//
// # For the front ends
//
//	a, _ := auth.New(cfg)                       // once, at start
//	a.Enabled()                                 // false: serve everyone
//	p, err := a.Check(ctx, auth.Credentials{User: u, Secret: pw, Remote: addr, Proto: "resp"})
//	p, err := a.CheckBearer(auth.Credentials{Secret: tok, Remote: addr, Proto: "http"})
//	if !p.Allows(auth.ActionWrite) { err = a.Denied(p, auth.ActionWrite, creds) }
//
// Check serves AUTH [user] password and HELLO 2 AUTH user password (a
// password or a token); CheckBearer serves HTTP and never runs bcrypt.
// Failures are logged (Info, rate-limited, with the remote address, never
// the secret) and counted in trireme_auth_failures_total{proto,reason}
// (the Authenticator is a prometheus.Collector). ErrBadCredentials and
// ErrNoCredentials are the errors to report; ErrNotEnabled answers AUTH on
// a node without credentials.
package auth

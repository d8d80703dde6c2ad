package ledger

import "github.com/onemember/onemember/internal/account"

// LockAccount lets the tests lock accounts as callers do, past the
// account.Lock bug that lockAccount works around.
var LockAccount = account.Lock

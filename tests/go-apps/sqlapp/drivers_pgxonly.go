//go:build pgxonly

package main

// postgresClients: database/sql through pgx's driver only; no other
// database/sql driver is linked.
var postgresClients = []struct{ name, driver string }{{"pgx", "pgx"}}

// withMySQL: no mysql routes (and no MySQL driver).
const withMySQL = false

func otherDriverCode(error) (string, bool) { return "", false }

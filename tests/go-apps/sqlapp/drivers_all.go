//go:build !pgxonly

package main

import (
	"errors"
	"strconv"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq" // database/sql driver "postgres"
)

// postgresClients: database/sql through pgx's driver and through lib/pq.
var postgresClients = []struct{ name, driver string }{{"pgx", "pgx"}, {"pq", "postgres"}}

// withMySQL: the mysql routes, through go-sql-driver/mysql.
const withMySQL = true

// otherDriverCode: lib/pq's SQLSTATE, go-sql-driver/mysql's error number.
func otherDriverCode(err error) (string, bool) {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code), true
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return strconv.Itoa(int(myErr.Number)), true
	}
	return "", false
}

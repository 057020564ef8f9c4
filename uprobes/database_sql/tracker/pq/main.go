// Command pq is what offsets-tracker builds against every lib/pq release to read
// its struct layouts from DWARF: a database/sql database through pq's driver
// (pq.conn) and the server's error (pq.Error). Nothing connects unless -dsn is
// given.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"

	"github.com/lib/pq"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL URL to query")
	flag.Parse()
	if *dsn == "" {
		return
	}
	db, err := sql.Open("postgres", *dsn)
	if err != nil {
		return
	}
	defer db.Close()
	_, err = db.ExecContext(context.Background(), "SELECT $1::int", 1)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		fmt.Println(pqErr.Code, pqErr.Message)
	}
}

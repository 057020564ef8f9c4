// Command pgx is what offsets-tracker builds against every pgx v5 release to read
// its struct layouts from DWARF. The Go linker only describes types the program
// uses, so it opens a database through pgx's database/sql driver (stdlib.Conn)
// and a native connection (pgx.Conn, its pgconn.PgConn and configs), and looks
// into an error for the server's (pgconn.PgError; pgconn.PrepareError, from
// v5.5.0, is described because the prepare path that wraps errors in it is
// linked). Nothing connects unless -dsn is given.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

func explain(err error) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		fmt.Println("server error", pg.Code, pg.Message)
	}
}

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL URL to query")
	flag.Parse()
	if *dsn == "" {
		return
	}
	ctx := context.Background()
	db, err := sql.Open("pgx", *dsn)
	if err != nil {
		explain(err)
		return
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err == nil {
		_ = c.Raw(func(dc any) error {
			conn := dc.(*stdlib.Conn).Conn()
			fmt.Println(conn.Config().Host, conn.PgConn().Conn().RemoteAddr())
			return nil
		})
		c.Close()
	}
	var one int
	explain(db.QueryRowContext(ctx, "SELECT 1").Scan(&one))
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		explain(err)
		return
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT $1::int", 1)
	explain(err)
}

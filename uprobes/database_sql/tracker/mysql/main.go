// Command mysql is what offsets-tracker builds against every go-sql-driver/mysql
// release to read its struct layouts from DWARF: a database/sql database through
// the driver (mysqlConn and its Config) and the server's error (MySQLError).
// Nothing connects unless -dsn is given.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

func main() {
	dsn := flag.String("dsn", "", "MySQL DSN to query")
	flag.Parse()
	if *dsn == "" {
		return
	}
	cfg, err := mysql.ParseDSN(*dsn)
	if err != nil {
		return
	}
	fmt.Println(cfg.Addr, cfg.DBName)
	db, err := sql.Open("mysql", *dsn)
	if err != nil {
		return
	}
	defer db.Close()
	_, err = db.ExecContext(context.Background(), "SELECT ?", 1)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		fmt.Println(myErr.Number, myErr.Message)
	}
}

// Command sqlapp is a net/http server whose routes run SQL queries through the
// database clients gosight traces: database/sql with three drivers (pgx v5's
// stdlib, lib/pq, go-sql-driver/mysql) and pgx v5's own API (a pgxpool.Pool and
// bare *pgx.Conn). Every handler runs its queries under the request's context
// (r.Context()), so a probe can parent the query spans to the HTTP server span.
//
// Drivers (the first path segment):
//
//	pgx        database/sql, driver "pgx" (github.com/jackc/pgx/v5/stdlib)  -> PostgreSQL
//	pq         database/sql, driver "postgres" (github.com/lib/pq)          -> PostgreSQL
//	mysql      database/sql, driver "mysql" (github.com/go-sql-driver/mysql) -> MariaDB/MySQL
//	pgxnative  pgxpool.Pool methods (Query, QueryRow, Exec, Begin)        -> PostgreSQL
//	pgxconn    *pgx.Conn methods, one connection per request from a small set -> PostgreSQL
//
// Routes, each as GET /<driver>/<route> (the database/sql drivers share one
// handler each; only the placeholder style differs):
//
//	select?id=N  parameterised SELECT of one user (QueryRow); 404 if no such row
//	literal      SELECT name FROM users WHERE id = 42 AND name <> 'secret' (Query + rows loop)
//	insert       INSERT INTO orders (Exec); returns the rows affected
//	prepared     Prepare + Stmt.QueryRow (pgx native: Conn.Prepare + QueryRow by name)
//	conn         database/sql only: DB.Conn + Conn.QueryRowContext
//	tx           BEGIN; UPDATE users ...; COMMIT
//	rollback     BEGIN; UPDATE users ...; ROLLBACK
//	syntax       a statement with a syntax error        -> 500, code 42601 / 1064
//	unique       INSERT of an existing primary key      -> 500, code 23505 / 1062
//	cancel       SELECT pg_sleep(1) / SELECT SLEEP(1) under a 50 ms timeout
//	             (?timeout_ms=N)                          -> 500, code 57014 or a context error
//	hello        SELECT 1 (for benchmarks)
//
// Success is 200 with JSON {"driver","route","result"}; a failed query is 500
// with JSON {"driver","route","code","error","type"} (type: the error's dynamic
// Go type as the query function returned it, e.g. *pgconn.PgError), where code is the server's error
// code (PostgreSQL SQLSTATE, MySQL error number) or, for a context error,
// "context_deadline_exceeded" / "context_canceled". A driver whose database was
// not configured answers 503.
//
// Flags (environment defaults in brackets):
//
//	-addr      listen address [SQLAPP_ADDR, else 127.0.0.1:8080]; port 0 picks one
//	-postgres  PostgreSQL URL or DSN, e.g. postgres://shop:shop@127.0.0.1:5432/shop?sslmode=disable [SQLAPP_POSTGRES]
//	-mysql     go-sql-driver DSN, e.g. shop:shop@tcp(127.0.0.1:3306)/shop [SQLAPP_MYSQL]
//
// At start it creates its schema (tables users and orders, 100 seeded users;
// idempotent) in each configured database, then prints exactly one line,
// "listening on <host:port>", to stdout.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// The database/sql clients on PostgreSQL, and whether MySQL is served: pgx and
// lib/pq, and go-sql-driver/mysql (drivers_all.go); with `-tags pgxonly`, pgx's
// database/sql driver alone (drivers_pgxonly.go), so that the binary has no
// other database/sql driver.

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	addr := flag.String("addr", env("SQLAPP_ADDR", "127.0.0.1:8080"), "listen address (port 0 picks a free port)")
	pgURL := flag.String("postgres", env("SQLAPP_POSTGRES", ""), "PostgreSQL URL or keyword/value DSN")
	myDSN := flag.String("mysql", env("SQLAPP_MYSQL", ""), "go-sql-driver/mysql DSN")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mux := http.NewServeMux()

	if *pgURL != "" {
		if err := createSchema(ctx, "pgx", *pgURL, postgresSchema); err != nil {
			log.Fatalf("postgres schema: %v", err)
		}
		for _, d := range postgresClients {
			db, err := sql.Open(d.driver, *pgURL)
			if err != nil {
				log.Fatalf("%s: %v", d.name, err)
			}
			db.SetMaxOpenConns(8)
			db.SetMaxIdleConns(8)
			register(mux, &sqlBackend{name: d.name, db: db, q: postgresQueries})
		}
		pool, err := pgxpool.New(ctx, *pgURL)
		if err != nil {
			log.Fatalf("pgxpool: %v", err)
		}
		register(mux, &poolBackend{pool: pool})
		cfg, err := pgx.ParseConfig(*pgURL)
		if err != nil {
			log.Fatalf("pgx config: %v", err)
		}
		register(mux, &connBackend{cfg: cfg, conns: make(chan *pgx.Conn, 4)})
	} else {
		for _, d := range postgresClients {
			register(mux, unconfigured(d.name))
		}
		register(mux, unconfigured("pgxnative"))
		register(mux, unconfigured("pgxconn"))
	}
	if withMySQL && *myDSN != "" {
		if err := createSchema(ctx, "mysql", *myDSN, mysqlSchema); err != nil {
			log.Fatalf("mysql schema: %v", err)
		}
		db, err := sql.Open("mysql", *myDSN)
		if err != nil {
			log.Fatalf("mysql: %v", err)
		}
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
		register(mux, &sqlBackend{name: "mysql", db: db, q: mysqlQueries})
	} else if withMySQL {
		register(mux, unconfigured("mysql"))
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}

// ---- schema -------------------------------------------------------------

var postgresSchema = []string{
	`CREATE TABLE IF NOT EXISTS users (id INT PRIMARY KEY, name TEXT NOT NULL, visits INT NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS orders (id SERIAL PRIMARY KEY, user_id INT NOT NULL, amount INT NOT NULL)`,
	`INSERT INTO users (id, name) SELECT g, 'user-' || g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING`,
}

var mysqlSchema = []string{
	`CREATE TABLE IF NOT EXISTS users (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, visits INT NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS orders (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT NOT NULL, amount INT NOT NULL)`,
	seedMySQL(),
}

func seedMySQL() string {
	var b strings.Builder
	b.WriteString("INSERT IGNORE INTO users (id, name) VALUES ")
	for i := 1; i <= 100; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, 'user-%d')", i, i)
	}
	return b.String()
}

// createSchema runs the statements once the server answers (retrying for a
// while: a test may start the app right after the server).
func createSchema(ctx context.Context, driver, dsn string, stmts []string) error {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		if err = db.PingContext(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// ---- queries per dialect --------------------------------------------------

type queries struct {
	selectUser, literal, insertOrder, updateVisits, syntax, unique, sleep, hello string
}

var postgresQueries = queries{
	selectUser:   `SELECT id, name FROM users WHERE id = $1`,
	literal:      `SELECT name FROM users WHERE id = 42 AND name <> 'secret'`,
	insertOrder:  `INSERT INTO orders (user_id, amount) VALUES ($1, $2)`,
	updateVisits: `UPDATE users SET visits = visits + 1 WHERE id = $1`,
	syntax:       `SELECT * FORM users`,
	unique:       `INSERT INTO users (id, name) VALUES ($1, $2)`,
	sleep:        `SELECT pg_sleep(1)`,
	hello:        `SELECT 1`,
}

var mysqlQueries = queries{
	selectUser:   `SELECT id, name FROM users WHERE id = ?`,
	literal:      `SELECT name FROM users WHERE id = 42 AND name <> 'secret'`,
	insertOrder:  `INSERT INTO orders (user_id, amount) VALUES (?, ?)`,
	updateVisits: `UPDATE users SET visits = visits + 1 WHERE id = ?`,
	syntax:       `SELECT * FORM users`,
	unique:       `INSERT INTO users (id, name) VALUES (?, ?)`,
	sleep:        `SELECT SLEEP(1)`,
	hello:        `SELECT 1`,
}

// ---- HTTP plumbing ------------------------------------------------------

// backend runs one route's queries; the result goes into the JSON reply.
type backend interface {
	driver() string
	routes() map[string]func(r *http.Request) (any, error)
}

var errNotFound = errors.New("no such row")

func register(mux *http.ServeMux, b backend) {
	for route, run := range b.routes() {
		route, run := route, run
		mux.HandleFunc("GET /"+b.driver()+"/"+route, func(w http.ResponseWriter, r *http.Request) {
			res, err := run(r)
			reply := map[string]any{"driver": b.driver(), "route": route}
			status := http.StatusOK
			switch {
			case errors.Is(err, errNotConfigured):
				status = http.StatusServiceUnavailable
				reply["error"] = err.Error()
			case errors.Is(err, errNotFound):
				status = http.StatusNotFound
				reply["error"] = err.Error()
			case err != nil:
				status = http.StatusInternalServerError
				reply["code"] = errorCode(err)
				reply["error"] = err.Error()
				reply["type"] = fmt.Sprintf("%T", err)
			default:
				reply["result"] = res
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(reply)
		})
	}
}

// errorCode is the server's code for a database error: SQLSTATE from pgx
// (*pgconn.PgError.Code) and lib/pq (*pq.Error.Code), the error number from
// go-sql-driver/mysql (*mysql.MySQLError.Number).
func errorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	if code, ok := otherDriverCode(err); ok {
		return code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "context_deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "context_canceled"
	}
	return ""
}

func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}

var errNotConfigured = errors.New("database not configured")

type unconfigured string

func (u unconfigured) driver() string { return string(u) }
func (u unconfigured) routes() map[string]func(*http.Request) (any, error) {
	m := map[string]func(*http.Request) (any, error){}
	for _, r := range []string{"select", "literal", "insert", "prepared", "conn", "tx", "rollback", "syntax", "unique", "cancel", "hello"} {
		m[r] = func(*http.Request) (any, error) { return nil, errNotConfigured }
	}
	return m
}

type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// ---- database/sql (pgx stdlib, lib/pq, go-sql-driver/mysql) -------------

type sqlBackend struct {
	name string
	db   *sql.DB
	q    queries
}

func (b *sqlBackend) driver() string { return b.name }

func (b *sqlBackend) routes() map[string]func(*http.Request) (any, error) {
	db, q := b.db, b.q
	return map[string]func(*http.Request) (any, error){
		"select": func(r *http.Request) (any, error) {
			var u user
			err := db.QueryRowContext(r.Context(), q.selectUser, intParam(r, "id", 1)).Scan(&u.ID, &u.Name)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, errNotFound
			}
			return u, err
		},
		"literal": func(r *http.Request) (any, error) {
			rows, err := db.QueryContext(r.Context(), q.literal)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var names []string
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					return nil, err
				}
				names = append(names, n)
			}
			return names, rows.Err()
		},
		"insert": func(r *http.Request) (any, error) {
			res, err := db.ExecContext(r.Context(), q.insertOrder, intParam(r, "user", 1), intParam(r, "amount", 10))
			if err != nil {
				return nil, err
			}
			return res.RowsAffected()
		},
		"prepared": func(r *http.Request) (any, error) {
			stmt, err := db.PrepareContext(r.Context(), q.selectUser)
			if err != nil {
				return nil, err
			}
			defer stmt.Close()
			var u user
			err = stmt.QueryRowContext(r.Context(), intParam(r, "id", 2)).Scan(&u.ID, &u.Name)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, errNotFound
			}
			return u, err
		},
		"conn": func(r *http.Request) (any, error) {
			c, err := db.Conn(r.Context())
			if err != nil {
				return nil, err
			}
			defer c.Close()
			var u user
			err = c.QueryRowContext(r.Context(), q.selectUser, intParam(r, "id", 3)).Scan(&u.ID, &u.Name)
			return u, err
		},
		"tx":       func(r *http.Request) (any, error) { return b.tx(r, true) },
		"rollback": func(r *http.Request) (any, error) { return b.tx(r, false) },
		"syntax": func(r *http.Request) (any, error) {
			rows, err := db.QueryContext(r.Context(), q.syntax)
			if err == nil {
				rows.Close()
			}
			return nil, err
		},
		"unique": func(r *http.Request) (any, error) {
			_, err := db.ExecContext(r.Context(), q.unique, 1, "duplicate")
			return nil, err
		},
		"cancel": func(r *http.Request) (any, error) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(intParam(r, "timeout_ms", 50))*time.Millisecond)
			defer cancel()
			var v any
			err := db.QueryRowContext(ctx, q.sleep).Scan(&v)
			return nil, err
		},
		"hello": func(r *http.Request) (any, error) {
			var v int
			err := db.QueryRowContext(r.Context(), q.hello).Scan(&v)
			return v, err
		},
	}
}

func (b *sqlBackend) tx(r *http.Request, commit bool) (any, error) {
	tx, err := b.db.BeginTx(r.Context(), nil)
	if err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(r.Context(), b.q.updateVisits, intParam(r, "id", 7))
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	n, _ := res.RowsAffected()
	if !commit {
		return n, tx.Rollback()
	}
	return n, tx.Commit()
}

// ---- pgx native -----------------------------------------------------------

// querier is what pgxpool.Pool, *pgxpool.Conn and *pgx.Conn have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// nativeBackend gives the pgx routes a querier, and a single *pgx.Conn for
// Prepare (which pgxpool.Pool does not have).
type nativeBackend interface {
	driver() string
	with(ctx context.Context, f func(q querier) error) error
	withConn(ctx context.Context, f func(c *pgx.Conn) error) error
}

// poolBackend: requests call the pool's own methods (Pool.Query, ...).
type poolBackend struct{ pool *pgxpool.Pool }

func (p *poolBackend) driver() string { return "pgxnative" }
func (p *poolBackend) with(ctx context.Context, f func(querier) error) error {
	return f(p.pool)
}
func (p *poolBackend) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c.Conn())
}
func (p *poolBackend) routes() map[string]func(*http.Request) (any, error) { return nativeRoutes(p) }

// connBackend: requests call *pgx.Conn methods on a connection of their own
// taken from a small set (a pgx.Conn serves one goroutine at a time).
type connBackend struct {
	cfg   *pgx.ConnConfig
	conns chan *pgx.Conn
}

func (c *connBackend) driver() string { return "pgxconn" }
func (c *connBackend) with(ctx context.Context, f func(querier) error) error {
	return c.withConn(ctx, func(conn *pgx.Conn) error { return f(conn) })
}
func (c *connBackend) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	var conn *pgx.Conn
	select {
	case conn = <-c.conns:
	default:
	}
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = pgx.ConnectConfig(ctx, c.cfg); err != nil {
			return err
		}
	}
	defer func() {
		select {
		case c.conns <- conn:
		default:
			conn.Close(context.Background())
		}
	}()
	return f(conn)
}
func (c *connBackend) routes() map[string]func(*http.Request) (any, error) { return nativeRoutes(c) }

func nativeRoutes(b nativeBackend) map[string]func(*http.Request) (any, error) {
	q := postgresQueries
	return map[string]func(*http.Request) (any, error){
		"select": func(r *http.Request) (any, error) {
			var u user
			err := b.with(r.Context(), func(db querier) error {
				return db.QueryRow(r.Context(), q.selectUser, intParam(r, "id", 1)).Scan(&u.ID, &u.Name)
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, errNotFound
			}
			return u, err
		},
		"literal": func(r *http.Request) (any, error) {
			var names []string
			err := b.with(r.Context(), func(db querier) error {
				rows, err := db.Query(r.Context(), q.literal)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var n string
					if err := rows.Scan(&n); err != nil {
						return err
					}
					names = append(names, n)
				}
				return rows.Err()
			})
			return names, err
		},
		"insert": func(r *http.Request) (any, error) {
			var n int64
			err := b.with(r.Context(), func(db querier) error {
				tag, err := db.Exec(r.Context(), q.insertOrder, intParam(r, "user", 1), intParam(r, "amount", 10))
				n = tag.RowsAffected()
				return err
			})
			return n, err
		},
		"prepared": func(r *http.Request) (any, error) {
			var u user
			err := b.withConn(r.Context(), func(c *pgx.Conn) error {
				sd, err := c.Prepare(r.Context(), "sqlapp_select_user", q.selectUser)
				if err != nil {
					return err
				}
				return c.QueryRow(r.Context(), sd.Name, intParam(r, "id", 2)).Scan(&u.ID, &u.Name)
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, errNotFound
			}
			return u, err
		},
		"conn": func(r *http.Request) (any, error) {
			var u user
			err := b.withConn(r.Context(), func(c *pgx.Conn) error {
				return c.QueryRow(r.Context(), q.selectUser, intParam(r, "id", 3)).Scan(&u.ID, &u.Name)
			})
			return u, err
		},
		"tx":       func(r *http.Request) (any, error) { return nativeTx(b, r, true) },
		"rollback": func(r *http.Request) (any, error) { return nativeTx(b, r, false) },
		"syntax": func(r *http.Request) (any, error) {
			return nil, b.with(r.Context(), func(db querier) error {
				rows, err := db.Query(r.Context(), q.syntax)
				if err != nil {
					return err
				}
				rows.Close()
				return rows.Err()
			})
		},
		"unique": func(r *http.Request) (any, error) {
			return nil, b.with(r.Context(), func(db querier) error {
				_, err := db.Exec(r.Context(), q.unique, 1, "duplicate")
				return err
			})
		},
		"cancel": func(r *http.Request) (any, error) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(intParam(r, "timeout_ms", 50))*time.Millisecond)
			defer cancel()
			return nil, b.with(ctx, func(db querier) error {
				var v any
				return db.QueryRow(ctx, q.sleep).Scan(&v)
			})
		},
		"hello": func(r *http.Request) (any, error) {
			var v int
			err := b.with(r.Context(), func(db querier) error {
				return db.QueryRow(r.Context(), q.hello).Scan(&v)
			})
			return v, err
		},
	}
}

func nativeTx(b nativeBackend, r *http.Request, commit bool) (any, error) {
	var n int64
	err := b.with(r.Context(), func(db querier) error {
		tx, err := db.Begin(r.Context())
		if err != nil {
			return err
		}
		tag, err := tx.Exec(r.Context(), postgresQueries.updateVisits, intParam(r, "id", 7))
		if err != nil {
			tx.Rollback(r.Context())
			return err
		}
		n = tag.RowsAffected()
		if !commit {
			return tx.Rollback(r.Context())
		}
		return tx.Commit(r.Context())
	})
	return n, err
}

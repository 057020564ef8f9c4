//! The database/sql drivers gosight knows by name — jackc/pgx v5 (its stdlib
//! driver and its own API), lib/pq and go-sql-driver/mysql — and what the probes
//! read of them (`drivers.h`): which driver a connection belongs to, the server's
//! address and the database it is connected to, and the server's error code in a
//! returned error. Layouts move across driver releases; the offsets-tracker
//! measures them with the programs in `tracker/`.

use crate::{std_field, AddressSpec, FieldSpec, GoModule, Implementations};

pub static PGX: GoModule = GoModule {
    path: "github.com/jackc/pgx/v5",
    short: "pgx",
    oldest: "v5.4.3",
    program: &[("go.mod", include_str!("tracker/pgx/go.mod")), ("main.go", include_str!("tracker/pgx/main.go"))],
};

pub static PQ: GoModule = GoModule {
    path: "github.com/lib/pq",
    short: "pq",
    oldest: "v1.10.9",
    program: &[("go.mod", include_str!("tracker/pq/go.mod")), ("main.go", include_str!("tracker/pq/main.go"))],
};

pub static MYSQL: GoModule = GoModule {
    path: "github.com/go-sql-driver/mysql",
    short: "mysql",
    oldest: "v1.6.0",
    program: &[("go.mod", include_str!("tracker/mysql/go.mod")), ("main.go", include_str!("tracker/mysql/main.go"))],
};

/// A binary whose only database/sql driver is pgx's: database/sql's functions
/// are left out and pgx's own (which its driver calls) make the spans — 2 uprobe
/// hits per statement instead of 4.
pub static PGX_STDLIB_ONLY: Implementations =
    Implementations { interface: "database/sql/driver.Conn", concretes: &["*github.com/jackc/pgx/v5/stdlib.Conn"] };

/// The driver modules whose layouts `drivers.h` reads.
pub static MODULES: &[&GoModule] = &[&PGX, &PQ, &MYSQL];

const fn field(global: &'static str, strukt: &'static str, field: &'static str) -> FieldSpec {
    FieldSpec { global, strukt, field, required: false }
}

/// Fields of `drivers.h`: all optional (what is unknown is left out of the span).
pub const FIELDS: &[FieldSpec] = &[
    // pgx: stdlib.Conn → pgx.Conn → pgconn.PgConn (net.Conn) / ConnConfig → pgconn.Config
    field("off_pgx_stdlib_conn", "github.com/jackc/pgx/v5/stdlib.Conn", "conn"),
    field("off_pgx_conn_pgconn", "github.com/jackc/pgx/v5.Conn", "pgConn"),
    field("off_pgx_conn_config", "github.com/jackc/pgx/v5.Conn", "config"),
    field("off_pgx_connconfig_config", "github.com/jackc/pgx/v5.ConnConfig", "Config"),
    field("off_pgconn_config_database", "github.com/jackc/pgx/v5/pgconn.Config", "Database"),
    field("off_pgconn_conn", "github.com/jackc/pgx/v5/pgconn.PgConn", "conn"),
    field("off_pgerror_code", "github.com/jackc/pgx/v5/pgconn.PgError", "Code"),
    field("off_prepareerror_err", "github.com/jackc/pgx/v5/pgconn.PrepareError", "err"),
    field("off_pgx_rows_err", "github.com/jackc/pgx/v5.baseRows", "err"),
    field("off_pgx_rows_closed", "github.com/jackc/pgx/v5.baseRows", "closed"),
    field("off_pgx_rows_reader", "github.com/jackc/pgx/v5.baseRows", "resultReader"),
    field("off_pgx_reader_err", "github.com/jackc/pgx/v5/pgconn.ResultReader", "err"),
    // lib/pq
    field("off_pq_conn_c", "github.com/lib/pq.conn", "c"),
    field("off_pq_conn_cfg", "github.com/lib/pq.conn", "cfg"), // from v1.11.0
    field("off_pq_config_database", "github.com/lib/pq.Config", "Database"),
    field("off_pqerror_code", "github.com/lib/pq.Error", "Code"),
    // go-sql-driver/mysql
    field("off_mysql_conn_netconn", "github.com/go-sql-driver/mysql.mysqlConn", "netConn"),
    field("off_mysql_conn_cfg", "github.com/go-sql-driver/mysql.mysqlConn", "cfg"),
    field("off_mysql_config_dbname", "github.com/go-sql-driver/mysql.Config", "DBName"),
    field("off_mysqlerror_number", "github.com/go-sql-driver/mysql.MySQLError", "Number"),
    // The peer of a net.Conn that is a *net.TCPConn.
    std_field("off_tcpconn_conn", "net.TCPConn", "conn", false),
    std_field("off_conn_fd", "net.conn", "fd", false),
    std_field("off_netfd_raddr", "net.netFD", "raddr", false),
];

const fn itab(global: &'static str, concrete: &'static str, interface: &'static str) -> AddressSpec {
    AddressSpec { global, concrete, interface }
}

/// Itabs of `drivers.h` and `go_net.h` (0 when the binary lacks the driver).
pub const ADDRESSES: &[AddressSpec] = &[
    itab("pgx_conn_itab", "*github.com/jackc/pgx/v5/stdlib.Conn", "database/sql/driver.Conn"),
    itab("pq_conn_itab", "*github.com/lib/pq.conn", "database/sql/driver.Conn"),
    itab("mysql_conn_itab", "*github.com/go-sql-driver/mysql.mysqlConn", "database/sql/driver.Conn"),
    itab("pgerror_itab", "*github.com/jackc/pgx/v5/pgconn.PgError", "error"),
    itab("prepareerror_itab", "*github.com/jackc/pgx/v5/pgconn.PrepareError", "error"),
    itab("pqerror_itab", "*github.com/lib/pq.Error", "error"),
    itab("mysqlerror_itab", "*github.com/go-sql-driver/mysql.MySQLError", "error"),
    itab("tcpconn_itab", "*net.TCPConn", "net.Conn"),
    crate::shared_fields::TCP_ADDR_ITAB,
];
